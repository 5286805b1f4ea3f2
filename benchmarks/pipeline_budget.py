"""`make run` budgets: the whole trigger-word pipeline from scratch on the default
configuration (target <= 15 min on 2 cores) and a cached re-run (target <= 60 s).

Runs in a scratch clone of this repository (git clone of HEAD), with its own MLflow
store, DVC cache, TTS cache and DVC remote, so the project's own state is untouched.
    python benchmarks/pipeline_budget.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run([str(BIN / "dvc"), "remote", "add", "--local", "-f", "local", str(Path(tmp) / "remote")],
                       cwd=clone, check=True)
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
               "MLFLOW_TRACKING_URI": f"sqlite:///{clone / 'mlflow.db'}"}
        first = timed([str(BIN / "cs230"), "run", "trigger-word", "--no-push"], clone, env)
        print(f"make run equivalent, from scratch: {first / 60:.1f} min (target <= 15 min)", flush=True)
        again = timed([str(BIN / "cs230"), "run", "trigger-word", "--no-push"], clone, env)
        print(f"cached re-run: {again:.1f} s (target <= 60 s); ratio {again / first:.3f} (target < 0.1)")


if __name__ == "__main__":
    main()
