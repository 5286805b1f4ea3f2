"""`make run` budgets: the whole trigger-word pipeline from scratch and a cached re-run
(target <= 60 s). By default on a small dataset and search (`--set` SMALL_DATASET and
SMALL_SEARCH below: a few minutes); --full on the default configuration, the `make run`
budget itself (target <= 15 min on 2 cores).

Runs in a scratch clone of this repository (git clone of HEAD), with its own MLflow
store, DVC cache, TTS cache and DVC remote, so the project's own state is untouched.
    python benchmarks/pipeline_budget.py [--full]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMALL_SEARCH = {"trigger_word.tune.trials": 2, "trigger_word.tune.startup_trials": 2, "trigger_word.tune.train_items": 32,
                "trigger_word.tune.val_items": 16, "trigger_word.tune.max_epochs": 1, "trigger_word.tune.grace_epochs": 1,
                "trigger_word.train.max_epochs": 2}


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    from generate_rate import SMALL_DATASET  # benchmarks/ is on sys.path when run as a script

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the default configuration (make run), not a small one")
    args = parser.parse_args()
    sets = [] if args.full else [arg for k, v in {**SMALL_DATASET, **SMALL_SEARCH}.items() for arg in ("--set", f"{k}={v}")]
    what = "default configuration" if args.full else "small configuration (--full: the default one)"
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run([str(BIN / "dvc"), "remote", "add", "--local", "-f", "local", str(Path(tmp) / "remote")],
                       cwd=clone, check=True)
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
               "MLFLOW_TRACKING_URI": f"sqlite:///{clone / 'mlflow.db'}", "PYTHONPATH": str(clone)}
        command = [str(BIN / "cs230"), "run", "trigger-word", "--no-push", *sets]
        first = timed(command, clone, env)
        target = " (target <= 15 min)" if args.full else ""
        print(f"make run equivalent from scratch, {what}: {first / 60:.1f} min{target}", flush=True)
        again = timed(command, clone, env)
        print(f"cached re-run: {again:.1f} s (target <= 60 s); ratio {again / first:.3f} (target < 0.1)")

if __name__ == "__main__":
    main()
