"""Generation rate of the default trigger-word dataset: clips/s and peak memory.

Runs the generate stage twice in a scratch folder on params.yaml as it stands: first with
an empty TTS cache (everything rendered), then with the cache warm (clip assembly only,
the case of a re-run after changing clip counts). Prints one line per run.
    python benchmarks/generate_rate.py [--clips N]
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


def run_once(params: Path, work: Path, cache: Path) -> dict:
    code = (
        "import json, sys; from pathlib import Path; from components.config import load_params; "
        "from components.generate import run; "
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
    parser.add_argument("--clips", type=int, help="override clips.main (default: params.yaml)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = yaml.safe_load((ROOT / "params.yaml").read_text())
        if args.clips:
            raw["trigger_word"]["clips"]["main"] = args.clips
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
