"""The brightness baseline: night when an image's mean pixel value is below a threshold fitted on
train. The floor every day/night model must clear on every split; it fails, by design, exactly on
the hard cases (lit cities at night, dark overcast days, dusk and dawn)."""
from __future__ import annotations

import numpy as np


def mean_brightness(images: np.ndarray, batch: int = 2000) -> np.ndarray:
    """Mean of all pixels and channels per image, 0..255, float64 [N] (batched: memory-mapped input)."""
    out = [np.asarray(images[i:i + batch], np.float64).reshape(min(batch, len(images) - i), -1).mean(axis=1)
           for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros(0)


def fit_threshold(images: np.ndarray, night: np.ndarray) -> float:
    """The threshold (midway between two neighbouring brightnesses) with the best train accuracy."""
    b, y = mean_brightness(images), np.asarray(night).astype(bool)
    if len(b) == 0 or y.all() or not y.any():
        raise ValueError("the brightness baseline needs day and night images to fit a threshold")
    order = np.argsort(b, kind="stable")
    b, y = b[order], y[order]
    # Calling the k darkest images night: correct = nights among them + days among the rest.
    correct = np.concatenate([[0], np.cumsum(y)]) + (~y).sum() - np.concatenate([[0], np.cumsum(~y)])
    k = int(np.argmax(correct))
    below = b[k - 1] if k > 0 else b[0] - 1.0
    above = b[k] if k < len(b) else b[-1] + 1.0
    return float((below + above) / 2)


def p_night(images: np.ndarray, threshold: float, scale: float = 10.0) -> np.ndarray:
    """A score for ROC and calibration figures: sigmoid((threshold - brightness) / scale); 0.5 at
    the threshold, so its decisions at 0.5 are the baseline's."""
    return 1.0 / (1.0 + np.exp((mean_brightness(images) - threshold) / scale))


def figures(threshold: float, images: np.ndarray, night: np.ndarray, condition: np.ndarray,
            threshold_p: float = 0.5, bins: int = 15) -> dict:
    """The baseline's classification metrics on one split, and by scene condition."""
    from components.vision.evaluation import classification_metrics, metrics_by_group

    p = p_night(images, threshold)
    return {"threshold_brightness": round(threshold, 3), **classification_metrics(night, p, threshold_p, bins),
            "by_condition": metrics_by_group(night, p, condition, threshold_p, bins)}
