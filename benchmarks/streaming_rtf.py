"""Streaming detection speed: real-time factor on one core (issue target: <= 0.01, i.e.
1 hour of audio in <= 36 s), for the trained detector if there is one, else a model of the
params' size with random weights (same cost).
    python benchmarks/streaming_rtf.py [--minutes 60] [--chunk-ms 100]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.audio.detection import StreamingDetector  # noqa: E402
from components.audio.model import load_model  # noqa: E402
from components.config import load_params  # noqa: E402
from components.tasks.trigger_word.fitting import build_model  # noqa: E402

DETECTOR = ROOT / "models/trigger_word/detector.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--chunk-ms", type=int, default=100, help="audio per call, as a device would send it")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    p = load_params(ROOT / "params.yaml").trigger_word
    model = load_model(DETECTOR) if DETECTOR.is_file() else build_model(p).eval()
    source = "trained detector" if DETECTOR.is_file() else "random weights, params' size"
    rng = np.random.default_rng(0)
    minute = (0.05 * rng.standard_normal(16000 * 60)).astype(np.float32)
    chunk = 16 * args.chunk_ms
    cfg = model.detection_config()  # the settings the model carries, as every consumer uses
    rtfs = []
    for _ in range(args.repeats):
        streamer, detector = model.stream(), StreamingDetector(model.step_seconds, cfg)
        started = time.perf_counter()
        for _ in range(int(args.minutes)):
            for start in range(0, len(minute), chunk):
                detector.process(streamer.process(minute[start:start + chunk]))
        rtfs.append((time.perf_counter() - started) / (args.minutes * 60))
    rtf = statistics.median(rtfs)
    print(f"streaming detection ({source}, {args.chunk_ms} ms chunks, 1 thread): real-time factor {rtf:.4f} "
          f"(median of {args.repeats}); 1 hour of audio in {rtf * 3600:.1f} s; target <= 0.01")


if __name__ == "__main__":
    main()
