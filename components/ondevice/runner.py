"""Run an exported step model with onnxruntime alone: the detector a device ships.

    python -m components.ondevice.runner model.onnx PATH [PATH ...] [--threshold T]

prints one JSON object per audio file, the records of `cs230 detect`:
`{"file": ..., "duration_s": ..., "detections": [{"time_s": ..., "score": ...}]}`, or
`{"file": ..., "error": ...}` for a file it cannot read; the exit status is 0 only if every file
was read. Files are read by the reader `cs230 detect` uses (audio_io.stream_audio: blocks,
downmix, soxr's streaming resampler, the same checks for bad files), then fed 20 ms at a time to
the `step` graph (components/ondevice/onnx_export.py), carrying its state. Threshold, smoothing
and refractory period come from the model's metadata, written at export.

Agreement with `cs230 detect` (same model, fp32): per-step probabilities within 1e-4, hence the
same detection times, and scores equal after rounding to 3 decimals, except where a smoothed
probability lies within ~1e-4 of the threshold or of a rounding boundary. Measured on the 300 test
clips with a trained model: identical records (278 detections).

Imports: numpy, soundfile, soxr, onnxruntime and the torch-free components.audio.detection and
audio_io; never torch (tests/test_export.py checks it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime as ort

from components.audio.audio_io import AUDIO_SUFFIXES, AudioReadError, find_audio_files, stream_audio
from components.audio.detection import DetectionConfig, StreamingDetector

STEP_FORMAT = "cs230-trigger-word-step/1"  # = onnx_export.STEP_FORMAT (not imported: that module needs torch)


class StepRunner:
    """One onnxruntime session of a step model, by default on one thread (the device case)."""

    def __init__(self, path: str | Path, threads: int = 1):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != STEP_FORMAT:
            raise ValueError(f"{path}: not a {STEP_FORMAT} model (format {meta.get('format')!r})")
        self.metadata = meta
        self.sample_rate, self.samples_per_step = int(meta["sample_rate"]), int(meta["samples_per_step"])
        self.detection = DetectionConfig(smoothing_steps=int(meta["smoothing_steps"]),
                                         refractory_s=float(meta["refractory_s"]), threshold=float(meta["threshold"]))
        self._state_inputs = [i for i in self.session.get_inputs() if i.name != "audio"]

    @property
    def step_seconds(self) -> float:
        return self.samples_per_step / self.sample_rate

    def initial_state(self) -> dict[str, np.ndarray]:
        """Zeros for every state input (batch 1): the state at the start of a stream."""
        return {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
                for i in self._state_inputs}

    def stream(self) -> "StepStream":
        return StepStream(self)

    def probs(self, wave: np.ndarray) -> np.ndarray:
        """Per-step probabilities of a whole clip (the same as streaming it)."""
        return self.stream().process(wave)


class StepStream:
    """Feed audio chunks of any size; get the probabilities of each completed 20 ms step."""

    def __init__(self, runner: StepRunner):
        self.runner, self.state = runner, runner.initial_state()
        self._pending = np.zeros(0, np.float32)
        self._outputs = [f"{name}_out" for name in self.state]

    def process(self, chunk: np.ndarray) -> np.ndarray:
        n = self.runner.samples_per_step
        samples = np.concatenate([self._pending, np.asarray(chunk, np.float32).reshape(-1)])
        steps = len(samples) // n
        probs = np.empty(steps, np.float32)
        run, names = self.runner.session.run, list(self.state)
        for i in range(steps):
            prob, *state = run(["prob", *self._outputs], {"audio": samples[None, i * n:(i + 1) * n], **self.state})
            probs[i] = prob[0]
            self.state = dict(zip(names, state))
        self._pending = samples[steps * n:]
        return probs


def detect_file(runner: StepRunner, path: Path, threshold: float | None = None) -> dict:
    """The `cs230 detect` record of one file, without its name."""
    cfg = runner.detection if threshold is None else DetectionConfig(
        runner.detection.smoothing_steps, runner.detection.refractory_s, threshold)
    stream, detector, info, found = runner.stream(), StreamingDetector(runner.step_seconds, cfg), {}, []
    for chunk in stream_audio(path, runner.sample_rate, info=info):
        found += detector.process(stream.process(chunk))
    return {"duration_s": round(info["frames"] / info["rate"], 3),
            "detections": [{"time_s": round(d.time_s, 3), "score": round(d.score, 3)} for d in found]}


def iter_files(paths: list[str]) -> Iterator[tuple[str, Path | None, str | None]]:
    """(name, path, error) for each given file and each WAV/FLAC under each given folder."""
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = find_audio_files(path)
            if not found:
                yield given, None, f"no {' or '.join(AUDIO_SUFFIXES)} files in this directory"
            yield from ((os.path.join(given, str(p.relative_to(path))), p, None) for p in found)
        elif path.is_file():
            yield given, path, None
        else:
            yield given, None, "no such file or directory" if not path.exists() else "not a regular file or directory"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="trigger-word detection with onnxruntime alone (JSON lines)")
    parser.add_argument("model", type=Path, help="an exported step model (.onnx)")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="WAV/FLAC file or folder (recursive)")
    parser.add_argument("--threshold", type=float, help="override the model's threshold")
    args = parser.parse_args(argv)
    try:
        runner = StepRunner(args.model)
    except Exception as exc:  # onnxruntime raises several types; all mean "cannot use this model"
        print(f"error: model {args.model}: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    failed = 0
    for name, path, error in iter_files(args.paths):
        try:
            if error:
                raise AudioReadError(error)
            record = {"file": name, **detect_file(runner, path, args.threshold)}
        except AudioReadError as exc:
            record, failed = {"file": name, "error": str(exc)}, failed + 1
        print(json.dumps(record), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
