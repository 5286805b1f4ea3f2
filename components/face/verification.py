"""Verification figures on pair distances: pairs, TAR at FAR, EER, ROC AUC, k-fold accuracy, p_same calibration.

A pair is accepted (called the same person) when its distance is <= the threshold. Pure numpy/sklearn.
"""
from __future__ import annotations

import numpy as np


def verification_pairs(labels: np.ndarray, max_same: int, n_different: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs [M, 2] and same-identity flags [M]: every same-identity pair (a seeded sample of max_same when
    there are more) and n_different distinct different-identity pairs (all of them when there are fewer), drawn
    with a seeded generator: the same labels and seed give the same pairs."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(len(labels), k=1)
    same = labels[i] == labels[j]
    same_idx, diff_idx = np.flatnonzero(same), np.flatnonzero(~same)
    if len(same_idx) > max_same:
        same_idx = np.sort(rng.choice(same_idx, max_same, replace=False))
    if len(diff_idx) > n_different:
        diff_idx = np.sort(rng.choice(diff_idx, n_different, replace=False))
    keep = np.concatenate([same_idx, diff_idx])
    return np.stack([i[keep], j[keep]], axis=1), same[keep]


def pair_distances(emb: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    return np.linalg.norm(emb[pairs[:, 0]] - emb[pairs[:, 1]], axis=1)


def all_pair_distances(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances of every same-identity pair and every different-identity pair of the rows."""
    emb, labels = np.asarray(emb, np.float64), np.asarray(labels)
    sq = (emb * emb).sum(1)
    d = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * emb @ emb.T, 0, None))
    upper = np.triu(np.ones(d.shape, bool), k=1)  # boolean masks keep the pairs in row-major (i < j) order
    same = labels[:, None] == labels[None, :]
    return d[upper & same], d[upper & ~same]


def threshold_at_far(d_diff: np.ndarray, far: float) -> float:
    """The largest threshold whose false-accept rate on these different pairs is <= far (ties counted)."""
    d = np.asarray(d_diff, np.float64)
    allowed = int(np.floor(far * len(d) + 1e-9))  # false accepts the target permits
    if allowed >= len(d):
        return float(np.max(d))
    # accept d <= t: every different pair below the allowed-th smallest is a false accept; stop just short of it
    # (a partition finds it without sorting: val has ~10 M different pairs, scored every epoch)
    return float(np.nextafter(np.partition(d, allowed)[allowed], -np.inf))


def tar_at_far(d_same: np.ndarray, d_diff: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold): the share of same pairs accepted at the threshold where FAR <= far."""
    t = threshold_at_far(d_diff, far)
    return float(np.mean(np.asarray(d_same) <= t)) if len(d_same) else float("nan"), t


def roc(d_same: np.ndarray, d_diff: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(FAR, TAR, AUC) over all thresholds (score = -distance)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.r_[np.ones(len(d_same)), np.zeros(len(d_diff))]
    score = -np.r_[d_same, d_diff]
    far, tar, _ = roc_curve(y, score)
    return far, tar, float(roc_auc_score(y, score))


def equal_error_rate(d_same: np.ndarray, d_diff: np.ndarray) -> float:
    """The error rate where FAR equals FRR (interpolated on the ROC)."""
    far, tar, _ = roc(d_same, d_diff)
    frr = 1 - tar
    k = int(np.argmax(far >= frr))  # first point past the crossing
    if k == 0:
        return float(far[0])
    # linear interpolation of FAR - FRR between points k-1 and k
    g0, g1 = far[k - 1] - frr[k - 1], far[k] - frr[k]
    w = g0 / (g0 - g1) if g1 != g0 else 0.0
    return float(far[k - 1] + w * (far[k] - far[k - 1]))


def best_accuracy_threshold(d: np.ndarray, same: np.ndarray) -> float:
    """The threshold (a midpoint between sorted distances) of highest pair accuracy."""
    order = np.argsort(d, kind="stable")
    d, same = np.asarray(d)[order], np.asarray(same)[order]
    # accepting the first k pairs: correct = same among them + different after them
    correct = np.r_[0, np.cumsum(same)] + (np.sum(~same) - np.r_[0, np.cumsum(~same)])
    k = int(np.argmax(correct))
    if k == 0:
        return float(d[0] - 1e-6)
    return float((d[k - 1] + d[k]) / 2) if k < len(d) else float(d[-1] + 1e-6)


def kfold_accuracy(d: np.ndarray, same: np.ndarray, folds: int = 10, seed: int = 0) -> tuple[float, float]:
    """LFW protocol: as many different pairs as same pairs (a seeded sample of the larger class, so
    calling every pair "different" scores 0.5, not the share of different pairs), in `folds` seeded
    folds; each fold's accuracy at the threshold best on the others. Returns (mean, std) over folds."""
    d, same = np.asarray(d, np.float64), np.asarray(same, bool)
    rng = np.random.default_rng(seed)
    n = min(int(same.sum()), int((~same).sum()))
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(same), n, replace=False),
                                   rng.choice(np.flatnonzero(~same), n, replace=False)]))
    d, same = d[keep], same[keep]
    fold = rng.permutation(len(d)) % folds
    accuracies = []
    for f in range(folds):
        test = fold == f
        t = best_accuracy_threshold(d[~test], same[~test])
        accuracies.append(float(np.mean((d[test] <= t) == same[test])))
    return float(np.mean(accuracies)), float(np.std(accuracies))


def fit_calibration(d: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of p_same = sigmoid(intercept + slope * d), logistic on val pairs with balanced class
    weights: p_same is calibrated to equal priors (a pair is as likely same as different)."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(class_weight="balanced", C=1e4, max_iter=1000)
    lr.fit(np.asarray(d, np.float64).reshape(-1, 1), np.asarray(same, int))
    return float(lr.intercept_[0]), float(lr.coef_[0, 0])


def verification_figures(d: np.ndarray, same: np.ndarray, threshold: float, far: float, folds: int,
                         seed: int) -> dict:
    """The headline verification figures of one model on one set of pairs, at its own threshold."""
    d, same = np.asarray(d, np.float64), np.asarray(same, bool)
    d_same, d_diff = d[same], d[~same]
    tar, _ = tar_at_far(d_same, d_diff, far)
    mean, std = kfold_accuracy(d, same, folds, seed)
    return {"same_pairs": int(same.sum()), "different_pairs": int((~same).sum()), "tar_at_far": tar,
            "kfold_accuracy": mean, "kfold_accuracy_std": std, "roc_auc": roc(d_same, d_diff)[2],
            "eer": equal_error_rate(d_same, d_diff),
            "tar_at_threshold": float(np.mean(d_same <= threshold)), "far_at_threshold": float(np.mean(d_diff <= threshold))}
