"""The face gallery (FAISS) and the clustering of faces, on hand-built vectors and labels."""
from __future__ import annotations

import math

import numpy as np
import pytest

from components.face.cluster import METHODS, bcubed_f, cluster, clustering_metrics, pairwise_f
from components.face.search import UNKNOWN, Gallery, GalleryError


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture()
def people() -> tuple[np.ndarray, np.ndarray]:
    """Eight random people in 128-d (far apart: ~1.41) and their faces, 6 each, ~0.3 from their centre."""
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(8, 128)))
    labels = np.repeat(np.arange(8), 6)
    return labels, unit(centres[labels] + rng.normal(scale=0.3 / math.sqrt(128), size=(48, 128)))


def test_identify_finds_each_enrolled_person_and_rejects_strangers(people):
    labels, faces = people
    names = [f"p{i}" for i in labels]
    gallery = Gallery("enc/1")
    enrolled = labels < 6  # p6 and p7 are never enrolled
    gallery.add([n for n, e in zip(names, enrolled) if e][::3], faces[enrolled][::3])  # 2 images each
    assert len(gallery) == 12 and gallery.identities == [f"p{i}" for i in range(6)]
    matches = gallery.identify(faces, threshold=0.9)
    assert [m.identity for m in matches] == [n if e else UNKNOWN for n, e in zip(names, enrolled)]
    assert all(m.distance < 0.6 for m, e in zip(matches, enrolled) if e)
    assert all(m.distance > 1.2 for m, e in zip(matches, enrolled) if not e)


def test_search_ranks_distinct_identities_by_euclidean_distance(people):
    labels, faces = people
    gallery = Gallery("enc/1")
    gallery.add([f"p{i}" for i in labels], faces)  # 6 images per person
    ranked = gallery.search(faces[:1], k=5)[0]
    assert len(ranked) == 5 and len({m.identity for m in ranked}) == 5  # people, not images
    assert ranked[0].identity == "p0" and ranked[0].distance == pytest.approx(0.0, abs=1e-3)
    distances = [m.distance for m in ranked]
    assert distances == sorted(distances)
    nearest_p3 = np.linalg.norm(faces[labels == 3] - faces[0], axis=1).min()
    assert next(m.distance for m in ranked if m.identity == "p3") == pytest.approx(nearest_p3, abs=1e-4)
    assert len(gallery.search(faces[:1], k=50)[0]) == 8  # never more than the people enrolled


def test_saved_gallery_loads_the_same_and_refuses_another_encoder(people, tmp_path):
    labels, faces = people
    gallery = Gallery("face-encoder/3")
    gallery.add([f"p{i}" for i in labels], faces)
    gallery.save(tmp_path / "g")
    again = Gallery.load(tmp_path / "g", encoder="face-encoder/3")
    assert again.names == gallery.names
    assert again.identify(faces, 0.9) == gallery.identify(faces, 0.9)
    with pytest.raises(GalleryError, match="enrolled with encoder face-encoder/3, but the model is face-encoder/4"):
        Gallery.load(tmp_path / "g", encoder="face-encoder/4")
    with pytest.raises(GalleryError, match="already exists; pass --force"):
        gallery.save(tmp_path / "g")
    gallery.save(tmp_path / "g", force=True)
    with pytest.raises(GalleryError, match="not a face gallery"):
        Gallery.load(tmp_path)


def test_bad_enrolment_is_one_clear_error(people):
    _, faces = people
    with pytest.raises(GalleryError, match="3 names need 3 vectors, got 2"):
        Gallery("e").add(["a", "b", "c"], faces[:2])
    with pytest.raises(GalleryError, match="vectors of 128 values"):
        Gallery("e").add(["a"], np.zeros((1, 64)))
    with pytest.raises(GalleryError, match="reserved 'unknown'"):
        Gallery("e").add([UNKNOWN], faces[:1])
    with pytest.raises(GalleryError, match="empty"):
        Gallery("e").identify(faces[:1], 0.9)


def test_metrics_on_hand_built_labels():
    truth, found = [0, 0, 0, 1, 1], ["a", "a", "b", "b", "b"]
    # pairs: 2 of the 4 same-person pairs share a cluster, 2 of the 4 same-cluster pairs are one person
    assert pairwise_f(truth, found) == {"precision": 0.5, "recall": 0.5, "f": 0.5}
    # per face (precision, recall): 2 x (1, 2/3), 1 x (1/3, 1/3), 2 x (2/3, 1): each sums to 11/3 over 5
    assert bcubed_f(truth, found)["f"] == pytest.approx(11 / 15)
    h = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))  # both label sets split 3:2
    mi = 0.8 * math.log(5 / 3) + 0.2 * math.log(5 / 9)
    m = clustering_metrics(truth, found)
    assert m["nmi"] == pytest.approx(mi / h) and (m["clusters_found"], m["clusters_true"]) == (2, 2)
    perfect = clustering_metrics([3, 3, 7], [1, 1, 0])
    assert perfect["pairwise_f"] == perfect["bcubed_f"] == perfect["nmi"] == 1.0
    singletons = clustering_metrics([0, 0, 1, 1], [0, 1, 2, 3])
    assert singletons["pairwise_f"] == 0.0 and singletons["bcubed_precision"] == 1.0
    assert singletons["bcubed_recall"] == 0.5


@pytest.mark.parametrize("method", METHODS)
def test_clusterer_finds_the_number_of_people_itself(people, method):
    labels, faces = people
    found = cluster(faces, threshold=0.9, method=method)
    m = clustering_metrics(labels, found)
    assert m["clusters_found"] == 8 and m["pairwise_f"] == 1.0
    assert list(found[:7]) == [0] * 6 + [1]  # numbered by first appearance
    assert cluster(faces[:1], 0.9, method).tolist() == [0]
