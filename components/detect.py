"""`cs230 detect`: find a trigger-word detector, stream audio files through it (DESIGN §4).

A file is never loaded whole: it is read in blocks, downmixed, resampled with a streaming
resampler when its rate is not the model's, and fed to the model's streamer and a
`StreamingDetector`. Memory stays bounded for an hour of audio, and at the model's rate the
detections equal offline `detect()` on the whole clip. The detection settings are the model's
own (threshold, smoothing, refractory period: chosen at evaluation, saved in the model) unless
the caller passes others (the CLI's explicit flags).

A bad file raises `AudioReadError` with a one-line reason. That covers a WAV whose header
declares more audio than the file holds: libsndfile would quietly decode the part that is
there, but a cut-off recording is reported, not half-scored. A model that cannot be found or
loaded raises `ModelLoadError`. MLflow is imported only when a model URI is given.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

from components import refs
from components.audio.audio_io import AUDIO_SUFFIXES, BLOCK_SECONDS, AudioReadError, find_audio_files, stream_audio
from components.audio.detection import DetectionConfig, Detection, StreamingDetector
from components.audio.model import TriggerWordModel, load_model
from components.refs import Input, load_model_ref

DETECTOR_FILE = "detector.pt"  # the save_model file inside a registered model's artifacts


def registered_name(slug: str) -> str:
    """The trigger word's name in the MLflow registry: one model per wake word."""
    return f"trigger-word-{slug}"


def champion_uri(slug: str) -> str:
    return f"models:/{registered_name(slug)}@champion"


def load_detector(ref: str, tracking_uri: str | None = None) -> TriggerWordModel:
    """A detector in eval mode from an MLflow model URI, a saved detector file, or a folder
    holding one (searched recursively for `detector.pt`)."""
    return load_model_ref(ref, DETECTOR_FILE, load_model, tracking_uri)


def iter_inputs(paths: list[str], base: Path) -> Iterator[Input]:
    """Each given file, and every WAV/FLAC under each given directory (recursive, sorted)."""
    return refs.iter_inputs(paths, base, find_audio_files, " or ".join(AUDIO_SUFFIXES))


class AudioTooLong(AudioReadError):
    """More audio than the caller's limit, counted in samples decoded, never the header's claim."""


def stream_detections(model: TriggerWordModel, path: Path, cfg: DetectionConfig,
                      block_seconds: float = BLOCK_SECONDS,
                      max_seconds: float | None = None) -> tuple[float, list[Detection]]:
    """(duration in seconds, detections at `cfg.threshold`) of one file, streamed.

    With `max_seconds`, decoding stops (AudioTooLong) one block after that much audio came out of
    the decoder, whatever the header claims: a file cannot lie its way past the limit.
    """
    streamer = model.stream()
    detector = StreamingDetector(model.step_seconds, cfg)
    info: dict = {}
    detections: list[Detection] = []
    limit = math.inf if max_seconds is None else max_seconds * model.sample_rate
    decoded = 0
    for chunk in stream_audio(path, model.sample_rate, block_seconds, info):
        decoded += len(chunk)
        if decoded > limit:
            raise AudioTooLong(f"audio is over {max_seconds:g} s long; the limit is {max_seconds:g} s")
        detections += detector.process(streamer.process(chunk))
    return info["frames"] / info["rate"], detections


def detect_file(model: TriggerWordModel, path: Path, cfg: DetectionConfig | None = None,
                block_seconds: float = BLOCK_SECONDS, max_seconds: float | None = None) -> dict:
    """The JSON record of one file, without its name: duration (ms) and detections (3 decimals).

    `cfg` None uses the model's own settings (`model.detection_config()`); a caller that
    overrides one passes `model.detection_config(threshold=...)`.
    """
    cfg = model.detection_config() if cfg is None else cfg
    duration, detections = stream_detections(model, path, cfg, block_seconds, max_seconds)
    return {"duration_s": round(duration, 3),
            "detections": [{"time_s": round(d.time_s, 3), "score": round(d.score, 3)} for d in detections]}


def detect_inputs(model: TriggerWordModel, inputs: Iterator[Input],
                  cfg: DetectionConfig | None = None) -> Iterator[dict]:
    """One record per input: {"file", "duration_s", "detections"} or {"file", "error"};
    `cfg` None: the model's own settings."""
    for item in inputs:
        if item.error is not None:
            yield {"file": item.name, "error": item.error}
            continue
        try:
            yield {"file": item.name, **detect_file(model, item.path, cfg)}
        except AudioReadError as exc:
            yield {"file": item.name, "error": str(exc)}
