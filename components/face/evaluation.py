"""Evaluating a face encoder on identities it never saw: verification, identification, slices.

Works on embeddings (any encoder, ours or dlib's raw descriptors normalised), so the baseline is scored by
the same code on the same pairs. Pure numpy/pandas; figures are in components/face/figures.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from components.face import verification as ver

POSE_BUCKETS = (15.0, 30.0)  # |yaw| degrees: frontal < 15 <= half-profile < 30 <= profile
POSE_NAMES = ("frontal", "half_profile", "profile")
SLICE_ATTRIBUTES = ("skin_tone", "age", "glasses", "beard")


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def operating_point(val_emb: np.ndarray, val_labels: np.ndarray, target_far: float) -> tuple[float, tuple, dict]:
    """(threshold at target_far over every val pair, p_same calibration on those pairs, val figures)."""
    d_same, d_diff = ver.all_pair_distances(val_emb, val_labels)
    tar, threshold = ver.tar_at_far(d_same, d_diff, target_far)
    d = np.r_[d_same, d_diff]
    same = np.r_[np.ones(len(d_same), bool), np.zeros(len(d_diff), bool)]
    return threshold, ver.fit_calibration(d, same), {"val_tar_at_far": tar, "val_same_pairs": len(d_same),
                                                     "val_different_pairs": len(d_diff)}


def identification(emb: np.ndarray, labels: np.ndarray, threshold: float, seed: int) -> dict:
    """Closed set: every identity enrolled with its first image, the other images searched (FAISS, exact inner
    product): rank-1, rank-5. Open set: a seeded half of the identities is enrolled; probes of the other half
    should be rejected (nearest distance > threshold), probes of the enrolled half identified and accepted."""
    from components.face.search import UNKNOWN, Gallery

    labels = np.asarray(labels).astype(str)
    ids, first = np.unique(labels, return_index=True)
    probe = np.setdiff1d(np.arange(len(labels)), first)
    gallery = Gallery("evaluation")
    gallery.add(list(ids), emb[first])
    ranked = gallery.search(emb[probe], k=5)
    hit = np.array([[m.identity == truth for m in r] + [False] * (5 - len(r)) for r, truth in zip(ranked, labels[probe])])
    known_ids = np.random.default_rng(seed).permutation(ids)[: len(ids) // 2]
    known = np.isin(ids, known_ids)
    open_set = Gallery("evaluation")
    open_set.add(list(ids[known]), emb[first[known]])
    said = np.array([m.identity for m in open_set.identify(emb[probe], threshold)])
    is_known = np.isin(labels[probe], known_ids)
    return {"enrolled": len(ids), "probes": len(probe), "rank1": float(hit[:, 0].mean()),
            "rank5": float(hit.any(1).mean()),
            "open_set_unknown_rejected": float(np.mean(said[~is_known] == UNKNOWN)) if (~is_known).any() else None,
            "open_set_known_identified": float(np.mean(said[is_known] == labels[probe][is_known]))}


def clustering(emb: np.ndarray, labels: np.ndarray, threshold: float, identities: int, seed: int) -> dict:
    """Clusters of the unlabelled faces of a seeded sample of identities (an album), cut at the threshold,
    scored against the truth: pairwise F, BCubed F, NMI, clusters found vs true."""
    from components.face.cluster import cluster, clustering_metrics

    ids = np.unique(labels)
    chosen = np.isin(labels, np.random.default_rng(seed).choice(ids, min(identities, len(ids)), replace=False))
    return clustering_metrics(np.asarray(labels)[chosen], cluster(emb[chosen], threshold))


def slice_values(manifest: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per image, the slice value of each attribute: categories as they are, numeric columns with many values
    in tertiles (low/mid/high), pose as the |yaw| bucket."""
    out = {}
    for col in SLICE_ATTRIBUTES:
        if col not in manifest:
            continue
        v = manifest[col]
        if pd.api.types.is_numeric_dtype(v) and v.nunique() > 6:
            v = pd.qcut(v, 3, labels=["low", "mid", "high"], duplicates="drop")
        out[col] = v.astype(str).to_numpy()
    if "yaw" in manifest:
        out["pose"] = np.array(POSE_NAMES)[np.digitize(np.abs(manifest["yaw"].to_numpy(float)), POSE_BUCKETS)]
    return out


def slices(d: np.ndarray, same: np.ndarray, pairs: np.ndarray, manifest: pd.DataFrame, threshold: float) -> dict:
    """TAR and FAR at the operating threshold on the pairs whose two images share a slice value (pose: the pair's
    larger |yaw| bucket), per attribute and value, so unequal error rates show."""
    out = {}
    for attribute, values in slice_values(manifest).items():
        a, b = values[pairs[:, 0]], values[pairs[:, 1]]
        if attribute == "pose":  # the harder image of the pair decides
            rank = {name: i for i, name in enumerate(POSE_NAMES)}
            key = np.where([rank[x] >= rank[y] for x, y in zip(a, b)], a, b)
            inside = np.ones(len(a), bool)
        else:
            key, inside = a, a == b
        out[attribute] = {}
        for value in sorted(set(key[inside])):
            m = inside & (key == value)
            s, f = m & same, m & ~same
            out[attribute][str(value)] = {"same_pairs": int(s.sum()), "different_pairs": int(f.sum()),
                                          "tar": float(np.mean(d[s] <= threshold)) if s.any() else None,
                                          "far": float(np.mean(d[f] <= threshold)) if f.any() else None}
    return out


def evaluate_embeddings(emb: np.ndarray, labels: np.ndarray, threshold: float, e,
                        manifest: pd.DataFrame | None = None) -> tuple[dict, dict]:
    """All figures of one encoder on one test set at its own threshold; `e` is face.evaluate. Returns
    (figures, pair data {pairs, same, distance} for plots)."""
    emb = normalise(emb)
    pairs, same = ver.verification_pairs(labels, e.max_same_pairs, e.different_pairs, e.seed)
    d = ver.pair_distances(emb, pairs)
    figures = {"verification": ver.verification_figures(d, same, threshold, e.target_far, e.folds, e.seed),
               "identification": identification(emb, labels, threshold, e.seed),
               "clustering": clustering(emb, labels, threshold, e.cluster_identities, e.seed), "threshold": threshold}
    if manifest is not None:
        figures["slices"] = slices(d, same, pairs, manifest, threshold)
    return figures, {"pairs": pairs, "same": same, "distance": d}
