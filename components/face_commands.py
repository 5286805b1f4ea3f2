"""`cs230 face`: the face encoder on image files (DESIGN §5), for the CLI and the server.

Each image is read (any format Pillow reads, EXIF orientation applied), its faces found and
aligned by dlib (components/face/align.py), or taken whole with `cropped`, and encoded. The
records, one JSON object per file (or pair):

    embed     {"file", "faces": [{"box": [x, y, w, h], "embedding": [128 floats]}]}
    verify    {"a", "b", "distance", "p_same", "same"}
    identify  {"file", "identity": name | "unknown", "distance"}
    cluster   {"file", "cluster"}
    enroll    {"file", "identity"}   (the person the image was enrolled as)

A file that cannot be used gives {"file", "error"} (verify: {"a", "b", "file", "error"}):
unreadable, no face found, or (for every command but embed, which reports them all) more than
one face: which one was meant is the user's to say, never guessed. The operating settings are
the model's own (threshold and p_same calibration, chosen at evaluation) unless overridden.
A gallery (enroll/identify) records the encoder it was built with: the SHA-256 of the saved
encoder file, so the same model is recognised however it is named (registry URI or path).
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from components import refs
from components.errors import InputError
from components.refs import Input, load_model_ref
from components.vision.images import IMAGE_SUFFIXES, ImageReadError

ENCODER_FILE = "encoder.pt"  # the saved encoder inside a registered model's artifacts
REGISTERED_NAME = "face-encoder"
CHAMPION_URI = f"models:/{REGISTERED_NAME}@champion"
DIGITS = 6  # embedding values and distances in JSON: float32 holds ~7 significant digits


@dataclass(frozen=True)
class Encoder:
    """A loaded face encoder and the identity a gallery is checked against."""
    net: object  # components.face.encoder.FaceEncoder, eval mode
    identity: str  # sha256 of the saved encoder file

    @property
    def threshold(self) -> float:
        return float(self.net.threshold)

    @property
    def chip_size(self) -> int:
        from components.face.backbone import DLIB_CHIP

        return DLIB_CHIP  # the aligner's chips; each kind resizes them to what it takes


def _load(path: Path) -> Encoder:
    from components.face.encoder import load_encoder

    with open(path, "rb") as f:
        identity = hashlib.file_digest(f, "sha256").hexdigest()
    return Encoder(load_encoder(path), identity)


def load_encoder_ref(ref: str, tracking_uri: str | None = None) -> Encoder:
    """An encoder from an MLflow model URI, a saved file, or a folder holding `encoder.pt`."""
    return load_model_ref(ref, ENCODER_FILE, _load, tracking_uri)


def find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def iter_inputs(paths: list[str], base: Path) -> Iterator[Input]:
    """Each given file, and every image under each given directory (recursive, sorted)."""
    return refs.iter_inputs(paths, base, find_images, "image")


class FaceInputError(InputError):
    """A readable image without the one face needed; `str()` is the reason (the caller names the file)."""


def reason(exc: InputError) -> str:
    """Why a file could not be used, without its path (the record names the file)."""
    return exc.reason if isinstance(exc, ImageReadError) else str(exc)


def faces_in(encoder: Encoder, path: Path, cropped: bool = False) -> list:
    """The aligned faces (components.face.align.Face: box, chip) of one image file. Raises
    ImageReadError (unreadable) or FaceInputError (no face)."""
    from components.face.align import align_file

    faces = align_file(path, encoder.chip_size, cropped)
    if not faces:
        raise FaceInputError("no face found (if the image is a face already, pass --cropped)")
    return faces


def one_face(encoder: Encoder, path: Path, cropped: bool = False) -> np.ndarray:
    """The embedding [128] of the one face in the image."""
    faces = faces_in(encoder, path, cropped)
    if len(faces) > 1:
        boxes = ", ".join(str(list(f.box)) for f in faces)
        raise FaceInputError(f"{len(faces)} faces found (boxes {boxes}); one is needed: crop the image to "
                             "the face and pass --cropped")
    return encoder.net.embed(faces[0].chip[None])[0]


def _rounded(x) -> float:
    return round(float(x), DIGITS)


def embed_file(encoder: Encoder, path: Path, cropped: bool = False) -> dict:
    """{"faces": [{"box", "embedding"}]} of one image, every face it holds (left to right)."""
    faces = faces_in(encoder, path, cropped)
    vectors = encoder.net.embed(np.stack([f.chip for f in faces]))
    return {"faces": [{"box": [int(v) for v in f.box], "embedding": [_rounded(x) for x in e]}
                      for f, e in zip(faces, vectors)]}


def _each(inputs: Iterator[Input], work) -> Iterator[dict]:
    """{"file", **work(path)} per input, or {"file", "error"}."""
    for item in inputs:
        if item.error is not None:
            yield {"file": item.name, "error": item.error}
            continue
        try:
            yield {"file": item.name, **work(item.path)}
        except InputError as exc:
            yield {"file": item.name, "error": reason(exc)}


def embed_inputs(encoder: Encoder, inputs: Iterator[Input], cropped: bool = False) -> Iterator[dict]:
    return _each(inputs, lambda path: embed_file(encoder, path, cropped))


def verify_record(encoder: Encoder, a: np.ndarray, b: np.ndarray, threshold: float | None = None) -> dict:
    """{"distance", "p_same", "same"} of two embeddings; `same` at the model's threshold unless given."""
    distance = float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
    limit = encoder.threshold if threshold is None else threshold
    return {"distance": _rounded(distance), "p_same": _rounded(encoder.net.p_same(np.array([distance]))[0]),
            "same": bool(distance <= limit)}


def read_pairs(csv_path: Path) -> list[tuple[str, str]]:
    """(a, b) per row of a CSV with columns `a` and `b` (extra columns ignored), as written: give
    `verify_pairs` the CSV's folder as base, so a pairs file travels with its images."""
    try:
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            if not {"a", "b"} <= set(reader.fieldnames or []):
                raise InputError(f"{csv_path}: needs a header with columns a and b, got {reader.fieldnames}")
            rows = [(row["a"] or "", row["b"] or "") for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{csv_path}: cannot read the pairs file ({exc})") from None
    return rows


def embedding_of(encoder: Encoder, path: Path, cropped: bool = False) -> np.ndarray | str:
    """The one face's embedding of an image file, or why there is none."""
    if path.is_dir():
        return "a directory, not an image"
    if not path.is_file():
        return "no such file or directory" if not path.exists() else "not a regular file"
    try:
        return one_face(encoder, path, cropped)
    except InputError as exc:
        return reason(exc)


def verify_pairs(encoder: Encoder, pairs: list[tuple[str, str]], base: Path, cropped: bool = False,
                 threshold: float | None = None) -> Iterator[dict]:
    """{"a", "b", "distance", "p_same", "same"} per pair, or {"a", "b", "file", "error"} naming the
    first unusable image; each image is embedded once however many pairs it is in."""
    cache: dict[str, np.ndarray | str] = {}
    for a, b in pairs:
        for name in (a, b):
            if name not in cache:
                cache[name] = embedding_of(encoder, base / name, cropped) if name else "empty path"
        bad = next((n for n in (a, b) if isinstance(cache[n], str)), None)
        yield ({"a": a, "b": b, "file": bad, "error": cache[bad]} if bad is not None
               else {"a": a, "b": b, **verify_record(encoder, cache[a], cache[b], threshold)})


def enroll_inputs(encoder: Encoder, gallery, given: str, base: Path, cropped: bool = False) -> Iterator[dict]:
    """Add the face of every image of GALLERY/<person>/... (`given`, from `base`) to `gallery` (a
    components.face.search Gallery), as {"file", "identity"}; an image outside a person's folder,
    or without one face, is {"file", "error"}."""
    gallery_dir = base / given
    images = find_images(gallery_dir) if gallery_dir.is_dir() else []
    if not images:
        what = "no image files in this directory" if gallery_dir.is_dir() else "not a directory"
        yield {"file": given, "error": f"{what} (expected GALLERY/<person>/*.jpg)"}
    for path in images:
        parts = path.relative_to(gallery_dir).parts
        name = os.path.join(given, *parts)
        if len(parts) < 2:
            yield {"file": name, "error": "not in a person's folder (expected GALLERY/<person>/*.jpg)"}
            continue
        vector = embedding_of(encoder, path, cropped)
        if isinstance(vector, str):
            yield {"file": name, "error": vector}
            continue
        gallery.add([parts[0]], vector[None])
        yield {"file": name, "identity": parts[0]}


def identify_file(encoder: Encoder, gallery, path: Path, cropped: bool = False,
                  threshold: float | None = None) -> dict:
    """{"identity", "distance"} of the one face of an image: the nearest person enrolled in
    `gallery` (a components.face.search Gallery), or "unknown" farther than the threshold (the
    model's unless given)."""
    limit = encoder.threshold if threshold is None else threshold
    match = gallery.identify(one_face(encoder, path, cropped)[None], limit)[0]
    return {"identity": match.identity, "distance": _rounded(match.distance)}


def identify_inputs(encoder: Encoder, gallery, inputs: Iterator[Input], cropped: bool = False,
                    threshold: float | None = None) -> Iterator[dict]:
    return _each(inputs, lambda path: identify_file(encoder, gallery, path, cropped, threshold))


def cluster_inputs(encoder: Encoder, inputs: Iterator[Input], cropped: bool = False,
                   threshold: float | None = None, method: str = "agglomerative") -> list[dict]:
    """{"file", "cluster"} per image (clusters numbered 0, 1, ... by first appearance, found at
    the threshold, the model's unless given), or {"file", "error"}; in input order."""
    from components.face.cluster import cluster

    records = list(_each(inputs, lambda path: {"embedding": one_face(encoder, path, cropped)}))
    good = [r for r in records if "error" not in r]
    if good:
        labels = cluster(np.stack([r.pop("embedding") for r in good]),
                         encoder.threshold if threshold is None else threshold, method)
        for r, label in zip(good, labels):
            r["cluster"] = int(label)
    return records
