"""`cs230 classify`: the day-night classifier on image files (DESIGN §5).

Each image (any size and common format) is decoded, center-cropped, resized to the model's
64x64 and scored in batches. One JSON line per file: {"file", "p_night", "label"}, or
{"file", "error"} for a file that is not a readable image. `p_night` is the calibrated
probability (the model carries the temperature fitted at evaluation); `label` is "night"
when p_night >= the model's threshold.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from components import refs
from components.refs import Input, load_model_ref
from components.vision.images import IMAGE_SUFFIXES, ImageReadError, load_image
from components.vision.model import DayNightClassifier, load_classifier

CLASSIFIER_FILE = "classifier.pt"  # the saved classifier inside a registered model's artifacts
REGISTERED_NAME = "day-night"
CHAMPION_URI = f"models:/{REGISTERED_NAME}@champion"
BATCH = 64  # images decoded and scored at once: memory stays bounded for any number of files


def load_classifier_ref(ref: str, tracking_uri: str | None = None) -> DayNightClassifier:
    """A classifier in eval mode from an MLflow model URI, a saved file, or a folder holding one."""
    return load_model_ref(ref, CLASSIFIER_FILE, load_classifier, tracking_uri)


def find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def iter_inputs(paths: list[str], base: Path) -> Iterator[Input]:
    """Each given file, and every image under each given directory (recursive, sorted)."""
    return refs.iter_inputs(paths, base, find_images, "image")


def record(p_night: float, threshold: float) -> dict:
    return {"p_night": round(float(p_night), 5), "label": "night" if p_night >= threshold else "day"}


def classify_images(model: DayNightClassifier, images: np.ndarray) -> list[dict]:
    """{"p_night", "label"} per image of a uint8 [N, 64, 64, 3] batch."""
    return [record(p, model.threshold) for p in model.predict_proba(images)]


def classify_inputs(model: DayNightClassifier, inputs: Iterator[Input]) -> Iterator[dict]:
    """One record per input, in input order: {"file", "p_night", "label"} or {"file", "error"}."""
    size = model.cfg.image_size
    batch: list[tuple[str, np.ndarray | str]] = []

    def flush() -> Iterator[dict]:
        good = [image for _, image in batch if not isinstance(image, str)]
        scored = iter(classify_images(model, np.stack(good)) if good else [])
        for name, image in batch:
            yield {"file": name, "error": image} if isinstance(image, str) else {"file": name, **next(scored)}
        batch.clear()

    for item in inputs:
        try:
            batch.append((item.name, item.error if item.error is not None else load_image(item.path, size)))
        except ImageReadError as exc:
            batch.append((item.name, exc.reason))
        if len(batch) == BATCH:
            yield from flush()
    yield from flush()
