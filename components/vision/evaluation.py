"""Evaluation of a binary day/night image classifier: calibration, threshold metrics, breakdowns.

Domain code on plain arrays. Everywhere `y` holds the true labels (1 = night, 0 = day) and `p`
the predicted P(night); night is the positive class. The predicted class is night when
p >= threshold (0.5 unless told otherwise).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_auc_score

# Probabilities are clipped to [EPS, 1 - EPS] for the log loss, so one confident mistake
# costs about 16 nats instead of infinity.
LOG_LOSS_EPS = 1e-7
# Temperature search range (log-uniform): wide enough for any sane network, bounded so the
# search never walks off to 0 or infinity on separable data.
TEMPERATURE_BOUNDS = (1e-2, 1e2)


def _check(y, p) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities as 1-D arrays of equal length; bad inputs rejected loudly."""
    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1 or len(y) != len(p):
        raise ValueError(f"y and p must be 1-D and of equal length, got shapes {y.shape} and {p.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must hold only 0 (day) and 1 (night)")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("p must hold probabilities in [0, 1]")
    return y.astype(np.int64), p


def _confidence_and_correct(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidence in the predicted class, max(p, 1 - p), and whether that prediction is right."""
    predicted = (p >= 0.5).astype(np.int64)
    return np.maximum(p, 1 - p), predicted == y


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each confidence in `bins` equal-width bins over [0, 1], intervals (low, high]."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)


def reliability_table(y, p, bins: int = 15) -> list[dict]:
    """One row per confidence bin (all `bins` of them, empty ones included): its edges `low`,
    `high`, `count`, mean `confidence` and `accuracy` (both None when the bin is empty)."""
    y, p = _check(y, p)
    confidence, correct = _confidence_and_correct(y, p)
    index = _bin_index(confidence, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    table = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
                      "confidence": float(confidence[members].mean()) if count else None,
                      "accuracy": float(correct[members].mean()) if count else None})
    return table


def expected_calibration_error(y, p, bins: int = 15) -> float:
    """Expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks").

    Each prediction's confidence is the probability of the class it predicts, max(p, 1 - p),
    and it is correct when that class is the true one. Confidences fall into `bins`
    equal-width bins over [0, 1] (intervals (low, high]); then

        ECE = sum over bins b of |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|.

    For a binary classifier confidences are >= 0.5, so only the upper half of the bins can
    be populated; this is the standard definition and the one the target "ECE <= 0.03" uses.
    """
    rows = [r for r in reliability_table(y, p, bins) if r["count"]]
    n = sum(r["count"] for r in rows)
    if n == 0:
        return 0.0
    return float(sum(r["count"] / n * abs(r["accuracy"] - r["confidence"]) for r in rows))


def _nll_of_logits(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of sigmoid(logits), computed stably as softplus(z) - y z."""
    return float(np.mean(np.logaddexp(0.0, logits) - y * logits))


def fit_temperature(logits, y) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising the validation NLL of
    sigmoid(logits / T). A bounded 1-D search over log T in TEMPERATURE_BOUNDS.

    Returns 1.0 (no change) for empty input or a single class, where the NLL has no interior
    minimum (it keeps falling as T -> 0 or grows without bound).
    """
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(y)
    if z.ndim != 1 or z.shape != y.shape:
        raise ValueError(f"logits and y must be 1-D and of equal length, got shapes {z.shape} and {y.shape}")
    if len(z) == 0 or len(np.unique(y)) < 2:
        return 1.0
    if not np.isfinite(z).all():
        raise ValueError("logits must be finite")
    y = y.astype(np.float64)
    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: _nll_of_logits(z / np.exp(log_t), y), bounds=(low, high),
                             method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Calibrated P(night) = sigmoid(logits / T), computed without overflow."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return np.exp(-np.logaddexp(0.0, -z))


def confusion_counts(y, p, threshold: float = 0.5) -> dict[str, int]:
    """Counts of the 2x2 confusion matrix with night as the positive class."""
    y, p = _check(y, p)
    predicted = p >= threshold
    truth = y == 1
    return {"tn": int((~truth & ~predicted).sum()), "fp": int((~truth & predicted).sum()),
            "fn": int((truth & ~predicted).sum()), "tp": int((truth & predicted).sum())}


def classification_metrics(y, p, threshold: float = 0.5, bins: int = 15) -> dict:
    """Headline metrics of one split, JSON-ready (plain ints and floats rounded to 5 decimals).

    accuracy, precision, recall and f1 are at `threshold` with night as positive (precision
    and f1 are 0.0 when nothing is predicted night); roc_auc is None when only one class is
    present; log_loss clips p to [LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]; brier is the mean squared
    error of p; ece is expected_calibration_error with `bins` bins.
    """
    y, p = _check(y, p)
    if len(y) == 0:
        raise ValueError("cannot compute metrics on an empty split")
    c = confusion_counts(y, p, threshold)
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    two_classes = len(np.unique(y)) == 2
    return {
        "accuracy": _round((c["tp"] + c["tn"]) / len(y)),
        "roc_auc": _round(roc_auc_score(y, p)) if two_classes else None,
        "precision": _round(precision), "recall": _round(recall), "f1": _round(f1),
        "log_loss": _round(log_loss(y, p)), "brier": _round(np.mean((p - y) ** 2)),
        "ece": _round(expected_calibration_error(y, p, bins)),
        "n": int(len(y)), "n_night": int(y.sum()), "confusion": c,
    }


def log_loss(y, p) -> float:
    """Mean binary cross-entropy in nats, p clipped to [LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]."""
    y, p = _check(y, p)
    clipped = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))


def metrics_by_group(y, p, groups, threshold: float = 0.5, bins: int = 15) -> dict[str, dict]:
    """n, n_night, accuracy and ece for each value of `groups` (e.g. the image's condition:
    dusk_dawn, lit_city_night, ...), keyed by the value as a string, in sorted order."""
    y, p = _check(y, p)
    groups = np.asarray(groups)
    if groups.shape != y.shape:
        raise ValueError(f"groups must align with y, got shapes {groups.shape} and {y.shape}")
    result = {}
    for value in sorted(np.unique(groups).tolist(), key=str):
        members = groups == value
        yg, pg = y[members], p[members]
        result[str(value)] = {"n": int(members.sum()), "n_night": int(yg.sum()),
                              "accuracy": _round(np.mean((pg >= threshold) == (yg == 1))),
                              "ece": _round(expected_calibration_error(yg, pg, bins))}
    return result


def worst_errors(y, p, k: int = 16, threshold: float = 0.5) -> np.ndarray:
    """Indices of the (at most) k most confident wrong predictions, most confident first.

    Confidence of a mistake is the probability it gave to the wrong class: p for a day image
    called night, 1 - p for a night image called day. Correct predictions never appear.
    """
    y, p = _check(y, p)
    wrong = np.flatnonzero((p >= threshold) != (y == 1))
    confidence_in_wrong_class = np.where(y[wrong] == 1, 1 - p[wrong], p[wrong])
    order = np.argsort(-confidence_in_wrong_class, kind="stable")
    return wrong[order[:k]]


def _round(x: float) -> float:
    return round(float(x), 5)
