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
from pathlib import Path
from typing import Iterator

from components import refs
from components.audio.audio_io import AUDIO_SUFFIXES, BLOCK_SECONDS, AudioReadError, find_audio_files, stream_audio
from components.audio.detection import DetectionConfig, Detection, StreamingDetector
from components.audio.model import TriggerWordModel, load_model
from components.refs import Input, load_model_ref

DETECTOR_FILE = "detector.pt"  # the save_model file inside a registered model's artifacts


def champion_uri(slug: str) -> str:
    return f"models:/trigger-word-{slug}@champion"


def load_detector(ref: str, tracking_uri: str | None = None) -> TriggerWordModel:
    """A detector in eval mode from an MLflow model URI, a saved detector file, or a folder
    holding one (searched recursively for `detector.pt`)."""
    return load_model_ref(ref, DETECTOR_FILE, load_model, tracking_uri)


def iter_inputs(paths: list[str], base: Path) -> Iterator[Input]:
    """Each given file, and every WAV/FLAC under each given directory (recursive, sorted)."""
    return refs.iter_inputs(paths, base, find_audio_files, " or ".join(AUDIO_SUFFIXES))


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
