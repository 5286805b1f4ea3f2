"""`cs230 detect`: find a trigger-word detector, stream audio files through it (DESIGN §4).

A file is never loaded whole: it is read in blocks, downmixed, resampled with a streaming
resampler when its rate is not the model's, and fed to the model's streamer and a
`StreamingDetector`. Memory stays bounded for an hour of audio, and at the model's rate the
detections equal offline `detect()` on the whole clip.

A bad file raises `AudioReadError` with a one-line reason. That covers a WAV whose header
declares more audio than the file holds: libsndfile would quietly decode the part that is
there, but a cut-off recording is reported, not half-scored. A model that cannot be found or
loaded raises `ModelLoadError`. MLflow is imported only when a model URI is given.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import numpy as np

from components.audio.audio_io import (AUDIO_SUFFIXES, BLOCK_SECONDS, AudioReadError, find_audio_files, first_line,
                                       stream_audio)
from components.audio.detection import DetectionConfig, Detection, StreamingDetector
from components.audio.model import TriggerWordModel, load_model

DETECTOR_FILE = "detector.pt"  # the save_model file inside a registered model's artifacts


class ModelLoadError(Exception):
    """The detector could not be found or loaded; `str()` is one line naming the model."""

    def __init__(self, message: str, not_found: bool = False):
        super().__init__(message)
        self.not_found = not_found  # nothing registered/saved there (as opposed to a bad file)


def champion_uri(slug: str) -> str:
    return f"models:/trigger-word-{slug}@champion"


def is_model_uri(ref: str) -> bool:
    """models:/..., runs:/..., s3://... are URIs; a path (even C:\\...) is not."""
    return len(urlparse(ref).scheme) > 1


def find_detector_file(folder: Path) -> Path:
    found = sorted(folder.rglob(DETECTOR_FILE), key=lambda p: (len(p.parts), p))
    if not found:
        raise ModelLoadError(f"no {DETECTOR_FILE} in {folder}", not_found=True)
    return found[0]


def _load_file(path: Path, ref: str) -> TriggerWordModel:
    try:
        return load_model(path)
    except Exception as exc:  # torch/pickle/state-dict errors vary; all mean "not a detector"
        raise ModelLoadError(f"{ref}: cannot load {path.name} ({first_line(exc)})") from None


def _missing_sqlite_store(tracking_uri: str | None) -> str | None:
    """The file of a sqlite tracking URI that does not exist (MLflow would create it)."""
    if tracking_uri and tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///").split("?")[0])
        if not path.is_file():
            return str(path)
    return None


def load_detector(ref: str, tracking_uri: str | None = None) -> TriggerWordModel:
    """A detector in eval mode from an MLflow model URI, a saved detector file, or a folder
    holding one (searched recursively for `detector.pt`)."""
    if not is_model_uri(ref):
        path = Path(ref)
        if path.is_dir():
            return _load_file(find_detector_file(path), ref)
        if not path.is_file():
            raise ModelLoadError(f"{ref}: no such file or directory", not_found=True)
        return _load_file(path, ref)
    missing = _missing_sqlite_store(tracking_uri) if ref.startswith(("models:", "runs:")) else None
    if missing:
        raise ModelLoadError(f"{ref}: the MLflow store {missing} does not exist", not_found=True)
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="cs230-detect-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(ref, dst_path=tmp, tracking_uri=tracking_uri)
        except MlflowException as exc:
            raise ModelLoadError(f"{ref}: {first_line(exc)}",
                                 not_found=exc.error_code == "RESOURCE_DOES_NOT_EXIST") from None
        except Exception as exc:  # network, permissions, a broken store: say why, one line
            raise ModelLoadError(f"{ref}: {type(exc).__name__}: {first_line(exc)}") from None
        local = Path(local)
        return _load_file(local if local.is_file() else find_detector_file(local), ref)


@dataclass(frozen=True)
class Input:
    name: str  # as the user gave it, or the directory as given joined with the found path
    path: Path | None  # absolute; None when `error` says why there is nothing to read
    error: str | None = None


def iter_inputs(paths: list[str], base: Path) -> Iterator[Input]:
    """Each given file, and every WAV/FLAC under each given directory (recursive, sorted).

    Relative paths are taken from `base` (where the user ran the command). A named file is
    tried whatever its suffix; a directory contributes only .wav/.flac files.
    """
    for given in paths:
        path = base / given
        if path.is_dir():
            found = find_audio_files(path)
            if not found:
                yield Input(given, None, f"no {' or '.join(AUDIO_SUFFIXES)} files in this directory")
            for p in found:
                yield Input(os.path.join(given, str(p.relative_to(path))), p)
        elif path.is_file():
            yield Input(given, path)
        elif path.exists():
            yield Input(given, None, "not a regular file or directory")
        else:
            yield Input(given, None, "no such file or directory")


def stream_detections(model: TriggerWordModel, path: Path, cfg: DetectionConfig,
                      block_seconds: float = BLOCK_SECONDS) -> tuple[float, list[Detection]]:
    """(duration in seconds, detections at `cfg.threshold`) of one file, streamed."""
    streamer = model.stream()
    detector = StreamingDetector(model.step_seconds, cfg)
    info: dict = {}
    detections: list[Detection] = []
    for chunk in stream_audio(path, model.feature_config.sample_rate, block_seconds, info):
        detections += detector.process(streamer.process(chunk))
    return info["frames"] / info["rate"], detections


def detect_file(model: TriggerWordModel, path: Path, cfg: DetectionConfig,
                threshold: float | None = None, block_seconds: float = BLOCK_SECONDS) -> dict:
    """The JSON record of one file, without its name: duration (ms) and detections (3 decimals).

    `threshold` None uses the model's own operating point (`model.threshold`).
    """
    cfg = dataclasses.replace(cfg, threshold=model.threshold if threshold is None else threshold)
    duration, detections = stream_detections(model, path, cfg, block_seconds)
    return {"duration_s": round(duration, 3),
            "detections": [{"time_s": round(d.time_s, 3), "score": round(d.score, 3)} for d in detections]}


def detect_inputs(model: TriggerWordModel, inputs: Iterator[Input], cfg: DetectionConfig,
                  threshold: float | None = None) -> Iterator[dict]:
    """One record per input: {"file", "duration_s", "detections"} or {"file", "error"}."""
    for item in inputs:
        if item.error is not None:
            yield {"file": item.name, "error": item.error}
            continue
        try:
            yield {"file": item.name, **detect_file(model, item.path, cfg, threshold)}
        except AudioReadError as exc:
            yield {"file": item.name, "error": str(exc)}
