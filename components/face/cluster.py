"""Grouping unlabelled faces by person, and how well a grouping matches the truth.

The number of people is not given: it is found from the data, by cutting at the encoder's
verification threshold, so "same cluster" means what "same person" means in `verify`.

- `agglomerative`: average-linkage agglomerative clustering of the Euclidean distances, cut
  where the mean distance between two groups passes the threshold.
- `chinese_whispers`: the graph method dlib's face-clustering example uses: an edge joins two
  faces closer than the threshold, then each face repeatedly takes the label most of its
  neighbours hold (dlib's implementation, deterministic for a given input).

Metrics (`clustering_metrics`), each from the contingency table of true labels and clusters:
- pairwise F: precision and recall over pairs of faces put in one cluster / of one person;
- BCubed F: per face, the share of its cluster that is its person (precision) and of its
  person that is in its cluster (recall), averaged over faces;
- NMI: sklearn's normalised mutual information (arithmetic mean normalisation);
- clusters found against the true number of people.
"""
from __future__ import annotations

import numpy as np

METHODS = ("agglomerative", "chinese_whispers")


def cluster(vectors: np.ndarray, threshold: float, method: str = "agglomerative") -> np.ndarray:
    """A cluster label (0, 1, ... in order of first appearance) per row of `vectors`."""
    x = np.asarray(vectors, dtype=np.float64)
    if method not in METHODS:
        raise ValueError(f"clustering method {method!r}: known are {', '.join(METHODS)}")
    if len(x) < 2:
        return np.zeros(len(x), dtype=np.int64)
    if method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, linkage="average",
                                         metric="euclidean").fit_predict(x)
    else:
        import dlib

        labels = np.asarray(dlib.chinese_whispers_clustering([dlib.vector(row.tolist()) for row in x],
                                                             float(threshold)))
    _, first = np.unique(labels, return_index=True)  # stable numbering: by each cluster's first face
    order = {label: rank for rank, label in enumerate(labels[np.sort(first)])}
    return np.array([order[label] for label in labels], dtype=np.int64)


def _pairs(counts: np.ndarray) -> float:
    return float((counts * (counts - 1) / 2).sum())


def pairwise_f(truth, found) -> dict:
    """Pairwise precision, recall and F-measure (1.0 where there are no pairs to get wrong)."""
    table = _contingency(truth, found)
    together = _pairs(table)
    pred, true = _pairs(table.sum(axis=0)), _pairs(table.sum(axis=1))
    precision = together / pred if pred else 1.0
    recall = together / true if true else 1.0
    return {"precision": precision, "recall": recall, "f": _harmonic(precision, recall)}


def bcubed_f(truth, found) -> dict:
    """BCubed precision, recall and F (Amigó et al. 2009), averaged over items."""
    table = _contingency(truth, found).astype(np.float64)
    n = table.sum()
    # every item of cell (person i, cluster j) has precision n_ij / |cluster j|, recall n_ij / |person i|
    precision = float((table ** 2 / np.maximum(table.sum(axis=0), 1)).sum() / n)
    recall = float((table ** 2 / np.maximum(table.sum(axis=1, keepdims=True), 1)).sum() / n)
    return {"precision": precision, "recall": recall, "f": _harmonic(precision, recall)}


def clustering_metrics(truth, found) -> dict:
    """pairwise_f, bcubed_f, nmi, clusters_found, clusters_true of labels `found` against `truth`."""
    from sklearn.metrics import normalized_mutual_info_score

    pairwise, bcubed = pairwise_f(truth, found), bcubed_f(truth, found)
    return {"pairwise_precision": pairwise["precision"], "pairwise_recall": pairwise["recall"],
            "pairwise_f": pairwise["f"], "bcubed_precision": bcubed["precision"],
            "bcubed_recall": bcubed["recall"], "bcubed_f": bcubed["f"],
            "nmi": float(normalized_mutual_info_score(truth, found)),
            "clusters_found": int(len(np.unique(found))), "clusters_true": int(len(np.unique(truth)))}


def _contingency(truth, found) -> np.ndarray:
    """Counts [person, cluster]; labels of any hashable kind."""
    truth, found = np.asarray(truth), np.asarray(found)
    if truth.shape != found.shape or truth.ndim != 1 or len(truth) == 0:
        raise ValueError(f"need two equal, non-empty label lists, got {truth.shape} and {found.shape}")
    _, t = np.unique(truth, return_inverse=True)
    _, f = np.unique(found, return_inverse=True)
    table = np.zeros((t.max() + 1, f.max() + 1), dtype=np.int64)
    np.add.at(table, (t, f), 1)
    return table


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b else 0.0
