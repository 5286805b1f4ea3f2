"""Pictures of a day/night classifier's evaluation: calibration, thresholds, ROC, confusion, errors.

Every function draws one matplotlib Figure (no pyplot state) and saves it as a PNG at `path`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from components.vision.evaluation import expected_calibration_error, reliability_table

DPI = 90


def _save(fig, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)


def plot_reliability(y, p, path, bins: int = 15, p_uncalibrated=None) -> None:
    """Reliability diagram: accuracy per confidence bin (bars and points at the bins' mean
    confidence) against the diagonal of perfect calibration, the bins' sample counts below,
    and the ECE in the title. `p_uncalibrated`, when given, adds the curve before calibration."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    table = [r for r in reliability_table(y, p, bins) if r["count"]]
    width = 1.0 / bins
    low = min((r["low"] for r in table), default=0.5)
    top.plot([low, 1], [low, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    top.bar([r["low"] for r in table], [r["accuracy"] for r in table], width=width, align="edge",
            color="tab:blue", alpha=0.35, edgecolor="tab:blue")
    top.plot([r["confidence"] for r in table], [r["accuracy"] for r in table], "o-", color="tab:blue",
             label="calibrated" if p_uncalibrated is not None else "model")
    title = f"ECE {expected_calibration_error(y, p, bins):.4f}"
    if p_uncalibrated is not None:
        before = [r for r in reliability_table(y, p_uncalibrated, bins) if r["count"]]
        top.plot([r["confidence"] for r in before], [r["accuracy"] for r in before], "s--", color="tab:orange",
                 label="before calibration")
        title += f" (before calibration {expected_calibration_error(y, p_uncalibrated, bins):.4f})"
    top.set(ylabel="accuracy", ylim=(min(low, 0.5) - 0.02, 1.02), title=title)
    top.title.set_fontsize(9)
    top.legend(fontsize=7, loc="upper left")
    bottom.bar([r["low"] for r in table], [r["count"] for r in table], width=width, align="edge",
               color="grey", edgecolor="black", lw=0.5)
    bottom.set(xlabel="confidence in predicted class", ylabel="images", xlim=(low, 1.0))
    _save(fig, path)


def _threshold_curves(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and accuracy at each threshold (precision NaN where nothing is positive)."""
    predicted = p[None, :] >= thresholds[:, None]
    truth = (y == 1)[None, :]
    tp = (predicted & truth).sum(1)
    n_predicted, n_night = predicted.sum(1), truth.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_predicted > 0, tp / n_predicted, np.nan)
        recall = tp / n_night if n_night else np.full(len(thresholds), np.nan)
        f1 = 2 * precision * recall / (precision + recall)
    accuracy = (predicted == truth).mean(1)
    return {"precision": precision, "recall": recall, "F1": f1, "accuracy": accuracy}


def plot_precision_recall_by_threshold(y, p, path, threshold: float = 0.5) -> None:
    """Precision, recall, F1 and accuracy (night positive) against the decision threshold,
    with the operating threshold marked."""
    from matplotlib.figure import Figure

    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    thresholds = np.linspace(0.0, 1.0, 201)
    curves = _threshold_curves(y, p, thresholds)
    at_operating = _threshold_curves(y, p, np.array([threshold]))
    fig = Figure(figsize=(5.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for (name, values), color in zip(curves.items(), ["tab:blue", "tab:orange", "tab:green", "black"]):
        ax.plot(thresholds, values, color=color, label=name)
        ax.plot([threshold], at_operating[name], "o", color=color)
    ax.axvline(threshold, color="grey", ls="--", lw=0.8, label=f"threshold {threshold:.2f}")
    ax.set(xlabel="threshold on P(night)", ylabel="metric", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="lower center")
    _save(fig, path)


def plot_roc(y, p, path) -> None:
    """ROC curve (night positive) with its AUC in the legend; a note instead when one class is missing."""
    from matplotlib.figure import Figure
    from sklearn.metrics import auc, roc_curve

    y = np.asarray(y)
    fig = Figure(figsize=(4.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, color="tab:blue", label=f"AUC {auc(fpr, tpr):.4f}")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "ROC undefined: one class only", ha="center")
    ax.set(xlabel="false positive rate (day called night)", ylabel="true positive rate (night found)",
           xlim=(0, 1), ylim=(0, 1.01))
    _save(fig, path)


def plot_confusion(confusion: dict, path) -> None:
    """2x2 confusion matrix (rows: true class, columns: predicted) with counts and row shares."""
    from matplotlib.figure import Figure

    counts = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]], dtype=np.int64)
    rows = counts.sum(1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    fig = Figure(figsize=(4.0, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{counts[i, j]}\n{shares[i, j]:.1%}", ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["day", "night"], yticklabels=["day", "night"],
           xlabel="predicted", ylabel="true")
    _save(fig, path)


def plot_gallery(images, titles: list[str], path, cols: int = 8) -> None:
    """Images (uint8 [N, H, W, 3]) in a grid of `cols` columns, each with its title,
    e.g. the worst errors titled "night p=0.03 dusk_dawn"."""
    from matplotlib.figure import Figure

    images = np.asarray(images)
    if len(images) != len(titles):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    cols = max(1, min(cols, len(images)))
    rows = max(1, -(-len(images) // cols))
    fig = Figure(figsize=(1.4 * cols, 1.55 * rows), layout="constrained")
    if len(images) == 0:
        fig.text(0.5, 0.5, "no images", ha="center")
        _save(fig, path)
        return
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=6)
    _save(fig, path)
