"""Pictures of a face encoder's evaluation: ROC, distance histograms, a 2-D map of embeddings, worst pairs.

Every function draws one matplotlib Figure (no pyplot state) and saves it as a PNG at `path`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from components.face import verification as ver

DPI = 90


def _save(fig, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path, target_far: float) -> None:
    """TAR against FAR (log scale) for each named model's (same distances, different distances)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for name, (d_same, d_diff) in curves.items():
        far, tar, auc = ver.roc(d_same, d_diff)
        tar_t, _ = ver.tar_at_far(d_same, d_diff, target_far)
        ax.plot(np.maximum(far, 1e-5), tar, label=f"{name}: AUC {auc:.4f}, TAR {tar_t:.3f} at FAR {target_far:g}")
    ax.axvline(target_far, color="grey", ls="--", lw=1)
    ax.set(xscale="log", xlim=(1e-5, 1), ylim=(0, 1.01), xlabel="false accept rate (different pairs accepted)",
           ylabel="true accept rate", title="verification ROC, test identities")
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def plot_distance_histograms(d: np.ndarray, same: np.ndarray, threshold: float, path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.subplots()
    bins = np.linspace(0, max(2.0, float(d.max())), 80)
    ax.hist(d[same], bins=bins, density=True, alpha=0.55, color="tab:green", label=f"same person ({same.sum()})")
    ax.hist(d[~same], bins=bins, density=True, alpha=0.55, color="tab:red", label=f"different ({(~same).sum()})")
    ax.axvline(threshold, color="black", lw=1.5, label=f"threshold {threshold:.3f} (picked on val)")
    ax.set(xlabel="distance between embeddings", ylabel="density", title=title)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_projection(emb: np.ndarray, labels: np.ndarray, path, identities: int = 20, seed: int = 0) -> None:
    """PCA to 2-D of the test embeddings of a seeded sample of identities, one colour each."""
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA

    ids = np.unique(labels)
    chosen = np.random.default_rng(seed).choice(ids, min(identities, len(ids)), replace=False)
    m = np.isin(labels, chosen)
    xy = PCA(2, random_state=seed).fit_transform(emb[m])
    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.subplots()
    colour = {ident: k for k, ident in enumerate(chosen)}
    ax.scatter(xy[:, 0], xy[:, 1], c=[colour[v] for v in labels[m]], cmap="tab20", s=14)
    ax.set(title=f"test embeddings, PCA to 2-D, {len(chosen)} identities (colour = identity)",
           xlabel="PC 1", ylabel="PC 2")
    _save(fig, path)


def plot_worst_pairs(chips: np.ndarray, pairs: np.ndarray, d: np.ndarray, same: np.ndarray, threshold: float,
                     path, n: int = 8) -> None:
    """Top row pairs: the closest different-person pairs (false accepts when below the threshold); bottom:
    the farthest same-person pairs (false rejects when above it). Each pair is two chips side by side."""
    from matplotlib.figure import Figure

    diff, sm = np.flatnonzero(~same), np.flatnonzero(same)
    rows = [("different", diff[np.argsort(d[diff])[:n]]), ("same", sm[np.argsort(-d[sm])[:n]])]
    cols = max(len(r[1]) for r in rows)
    if cols == 0:
        return
    fig = Figure(figsize=(2.2 * cols, 5), layout="constrained")
    axes = np.asarray(fig.subplots(2, cols, squeeze=False))
    for r, (kind, idx) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(idx):
                continue
            k = idx[c]
            ax.imshow(np.concatenate([chips[pairs[k, 0]], chips[pairs[k, 1]]], axis=1))
            wrong = (d[k] <= threshold) != same[k]
            ax.set_title(f"{kind} d={d[k]:.3f}" + (" ERROR" if wrong else ""), fontsize=8,
                         color="red" if wrong else "black")
    fig.suptitle(f"worst false accepts (top) and false rejects (bottom); threshold {threshold:.3f}", fontsize=10)
    _save(fig, path)
