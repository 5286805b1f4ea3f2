"""Generation rate of the trigger-word dataset: clips/s and peak memory.

Runs the generate stage twice in a scratch folder: first with an empty TTS cache
(everything rendered), then with the cache warm (clip assembly only, the case of a re-run
after changing clip counts). Prints one line per run. By default on a small dataset
(SMALL_DATASET below, a minute or two); --full uses params.yaml as it stands (the default
3,000 clips and 2 h negative stream: many minutes).
    python benchmarks/generate_rate.py [--clips N] [--full]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# A small trigger-word dataset (dotted params.yaml keys): every subset, family and group
# kind appears. The other benchmarks that need trigger-word data use it too.
SMALL_DATASET = {"trigger_word.clips.main": 240, "trigger_word.clips.unseen_voice": 24,
                 "trigger_word.speech.trigger_renders": 60, "trigger_word.speech.random_negative_words": 20,
                 "trigger_word.speech.renders_per_negative_word": 2, "trigger_word.negative_stream.minutes": 5,
                 "trigger_word.negative_stream.groups": 2, "trigger_word.generate.groups": 10}

from components.config import apply_overrides, read_raw  # noqa: E402


def run_once(params: Path, work: Path, cache: Path) -> dict:
    code = (
        "import json, sys; from pathlib import Path; from components.config import load_params; "
        "from components.tasks.trigger_word.generate import run; "
        f"p = load_params(Path({str(params)!r})).trigger_word; "
        f"print(json.dumps(run(p, Path('data/raw/backgrounds'), Path({str(work / 'generated')!r}), "
        f"Path({str(work / 'report')!r}), Path({str(cache)!r}))))"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, help="override clips.main")
    parser.add_argument("--full", action="store_true", help="params.yaml as it stands, not SMALL_DATASET")
    args = parser.parse_args()
    overrides = {} if args.full else dict(SMALL_DATASET)
    if args.clips:
        overrides["trigger_word.clips.main"] = args.clips
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = apply_overrides(read_raw(ROOT / "params.yaml"), [f"{k}={v}" for k, v in overrides.items()])
        (tmp / "params.yaml").write_text(yaml.safe_dump(raw))
        for label in ("cold TTS cache", "warm TTS cache"):
            s = run_once(tmp / "params.yaml", tmp / label.replace(" ", "-"), tmp / "tts-cache")
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            files = s["clips"] + s["stream_segments"]
            print(f"generate ({label}): {files} files ({s['audio_hours']} h of audio) in {s['wall_s']} s wall "
                  f"(TTS {s['tts_seconds']} s); clip assembly {s['clips_per_second']} clips/s; "
                  f"{files / s['wall_s']:.1f} files/s end to end; peak RSS of largest process {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
