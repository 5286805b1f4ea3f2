"""A searchable gallery of enrolled faces: FAISS exact inner product over L2-normalised vectors.

    gallery = Gallery(encoder="face-encoder/3")          # the encoder the vectors came from
    gallery.add(["ada", "ada", "bob"], vectors)          # several images per person allowed
    gallery.search(queries, k=5)                         # ranked distinct identities per query
    gallery.identify(queries, threshold=0.9)             # nearest identity, or "unknown" past it
    gallery.save(directory); Gallery.load(directory, encoder="face-encoder/3")

On unit vectors the inner product ranks exactly as the Euclidean distance does, and
`‖a − b‖ = sqrt(2 − 2 a·b)`, so every distance reported here is the Euclidean distance the
encoder's verification threshold is stated in. `IndexFlatIP` is exhaustive (no approximation):
a gallery of a few thousand people is searched in well under a millisecond per query.

A saved gallery is a directory: `index.faiss` (the vectors) and `gallery.json` (format, the
encoder's identity, dimension, the name of each vector). `load` with an `encoder` refuses a
gallery that another encoder built: its vectors live in another space and every distance
would be meaningless.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

FORMAT = "cs230-face-gallery/1"
INDEX_FILE, META_FILE = "index.faiss", "gallery.json"
UNKNOWN = "unknown"


class GalleryError(Exception):
    """A gallery that cannot be built, saved or used; `str()` is one line naming the cause."""


@dataclass(frozen=True)
class Match:
    identity: str  # an enrolled name, or UNKNOWN when rejected
    distance: float  # Euclidean distance to the nearest vector of the nearest identity


def unit_rows(vectors: np.ndarray, dim: int) -> np.ndarray:
    """float32 [N, dim] (one vector may be given flat), each row scaled to length 1."""
    x = np.asarray(vectors, dtype=np.float32)
    x = x[None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] != dim:
        raise GalleryError(f"expected vectors of {dim} values, got an array of shape {np.shape(vectors)}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1))


def distance_from_similarity(similarity: np.ndarray) -> np.ndarray:
    """Euclidean distance of unit vectors from their inner product."""
    return np.sqrt(np.clip(2.0 - 2.0 * np.asarray(similarity, dtype=np.float64), 0.0, 4.0))


def check_target(directory: Path, force: bool = False) -> Path:
    """`directory` if a gallery may be written there: it is new or empty, or `force` is given and
    it is a directory (never a file); else GalleryError. Call it before the work of enrolling."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise GalleryError(f"{directory}: exists and is not a directory")
    if directory.exists() and not force and any(directory.iterdir()):
        raise GalleryError(f"{directory}: already exists; pass --force to replace it")
    return directory


class Gallery:
    """Enrolled identities over one encoder's embedding space."""

    def __init__(self, encoder: str, dim: int = 128):
        import faiss

        self.encoder, self.dim = str(encoder), int(dim)
        self.index = faiss.IndexFlatIP(self.dim)
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    @property
    def identities(self) -> list[str]:
        return sorted(set(self.names))

    def add(self, names: Sequence[str], vectors: np.ndarray) -> None:
        """Enroll one vector per name (a name may repeat: several images of one person)."""
        x = unit_rows(vectors, self.dim)
        if len(x) != len(names):
            raise GalleryError(f"enroll: {len(names)} names need {len(names)} vectors, got {len(x)}")
        bad = [n for n in names if not isinstance(n, str) or not n.strip() or n == UNKNOWN]
        if bad:
            raise GalleryError(f"enroll: {bad[0]!r} is not a usable name (empty, or the reserved {UNKNOWN!r})")
        self.index.add(x)
        self.names.extend(names)

    def search(self, vectors: np.ndarray, k: int = 5) -> list[list[Match]]:
        """Per query, the `k` nearest distinct identities (each at its nearest enrolled vector),
        nearest first; fewer when the gallery holds fewer people."""
        if not self.names:
            raise GalleryError("the gallery is empty: enroll at least one face first")
        queries = unit_rows(vectors, self.dim)
        # the k nearest identities are among the k * (most images of one person) nearest vectors
        per_person = max(Counter(self.names).values())
        similarity, rows = self.index.search(queries, min(len(self.names), k * per_person))
        out = []
        for sims, idx in zip(distance_from_similarity(similarity), rows):
            ranked: dict[str, float] = {}
            for d, i in zip(sims, idx):
                if i >= 0 and self.names[i] not in ranked:
                    ranked[self.names[i]] = float(d)
            out.append([Match(n, d) for n, d in list(ranked.items())[:k]])
        return out

    def identify(self, vectors: np.ndarray, threshold: float) -> list[Match]:
        """The nearest identity of each query, or UNKNOWN when it is farther than `threshold`
        (open-set rejection at the encoder's verification threshold)."""
        return [Match(best.identity if best.distance <= threshold else UNKNOWN, best.distance)
                for best in (ranked[0] for ranked in self.search(vectors, k=1))]

    def save(self, directory: Path, force: bool = False) -> Path:
        """Write the gallery to `directory`; an existing one is replaced only with `force`."""
        import faiss

        directory = check_target(directory, force)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        meta = {"format": FORMAT, "encoder": self.encoder, "dim": self.dim, "names": self.names}
        (directory / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path, encoder: str | None = None) -> "Gallery":
        """The gallery saved in `directory`; with `encoder`, GalleryError unless it built it."""
        import faiss

        directory = Path(directory)
        try:
            meta = json.loads((directory / META_FILE).read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            index = faiss.read_index(str(directory / INDEX_FILE))
        except FileNotFoundError as exc:
            raise GalleryError(f"{directory}: not a face gallery (no {Path(exc.filename).name}); "
                               "build one with `cs230 face enroll`") from None
        except (ValueError, KeyError, RuntimeError) as exc:  # bad JSON, another format, a broken index
            raise GalleryError(f"{directory}: unreadable face gallery ({str(exc).splitlines()[0]})") from None
        if encoder is not None and meta["encoder"] != str(encoder):
            raise GalleryError(f"{directory}: enrolled with encoder {meta['encoder'][:16]}, but the model is "
                               f"{str(encoder)[:16]}: "
                               "distances across encoders mean nothing; enroll again with this model")
        if index.ntotal != len(meta["names"]) or index.d != meta["dim"]:
            raise GalleryError(f"{directory}: {INDEX_FILE} holds {index.ntotal} vectors of {index.d}, "
                               f"{META_FILE} names {len(meta['names'])} of {meta['dim']}")
        gallery = cls(meta["encoder"], meta["dim"])
        gallery.index, gallery.names = index, list(meta["names"])
        return gallery
