"""Scaling of the tune stage: 2 concurrent trials against 1 on local Ray, and the same
search on a one-node and a two-node Ray cluster (`ray start`, as `cs230 team up` starts it).

Every measurement runs the real tune stage (`components/tune.py`) on one small generated
dataset, with the same budget: pruning off (grace_epochs = max_epochs) and every trial a
seeded random startup trial, so each run trains the same configurations for the same
epochs and only the scheduling differs. Each runs in its own process (a fresh Ray driver).
Wall time includes connecting to (or starting) Ray, as a user sees it. Ray's own
scheduling overhead per trial is the wall time of no-op trials (report once, return) on
the two-node cluster, divided by their number. On one 2-core machine both nodes share the
same cores, so the cluster's speedup is bounded by 2.0x like local concurrency's.
    python benchmarks/tune_scaling.py [--trials 4] [--epochs 3] [--train-clips 240]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components import paths  # noqa: E402
from components.config import apply_overrides, read_raw, validate_params  # noqa: E402

DATASET = ["trigger_word.speech.trigger_renders=60", "trigger_word.speech.random_negative_words=20",
           "trigger_word.clips.main=360", "trigger_word.clips.unseen_voice=20",
           "trigger_word.negative_stream.minutes=5.0", "trigger_word.negative_stream.groups=2",
           "trigger_word.generate.groups=10"]


def params(overrides: list[str]):
    return validate_params(apply_overrides(read_raw(ROOT / paths.PARAMS_FILE), [*DATASET, *overrides])).trigger_word


def make_dataset(work: Path) -> tuple[Path, Path]:
    from components import generate, split

    p = params([])
    generate.run(p, work / "no-raw", work / "generated", work / "generate-report", ROOT / paths.TTS_CACHE_DIR)
    split.run("trigger-word", p, work / "generated", work / "split")
    return work / "generated", work / "split"


def measure(args) -> dict:
    """One search (or the no-op trials) in this process, against RAY_ADDRESS or local Ray."""
    from components import tune

    if args.noop:
        return {"overhead_s": noop_trials_seconds(args.trials) / args.trials}
    budget = [f"trigger_word.tune.trials={args.trials}", f"trigger_word.tune.startup_trials={args.trials}",
              f"trigger_word.tune.train_items={args.train_clips}", f"trigger_word.tune.val_items={args.train_clips // 4}",
              f"trigger_word.tune.max_epochs={args.epochs}", f"trigger_word.tune.grace_epochs={args.epochs}",
              f"trigger_word.tune.concurrency={args.concurrency}"]
    with tempfile.TemporaryDirectory(prefix="tune-scaling-") as work:
        started = time.perf_counter()
        result = tune.run("trigger-word", params(budget), args.data, args.split, Path(work) / "out",
                          Path(work) / "report", Path(work) / "cache", ray_address=os.environ.get("RAY_ADDRESS"))
        wall = time.perf_counter() - started
    return {"wall_s": wall, "trials": result["trials"], "epochs": result["epochs"]}


def noop_trials_seconds(n: int) -> float:
    import logging

    import ray
    from ray import tune

    ray.init(address=os.environ["RAY_ADDRESS"], logging_level=logging.WARNING)
    started = time.perf_counter()
    tune.Tuner(tune.with_resources(lambda config: tune.report({"x": config["x"]}), {"cpu": 1}),
               param_space={"x": tune.grid_search(list(range(n)))},
               tune_config=tune.TuneConfig(reuse_actors=True),
               run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="tune-noop-"), verbose=0)).fit()
    wall = time.perf_counter() - started
    ray.shutdown()
    return wall


def run_measure(args, concurrency: int, env: dict[str, str], noop: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--measure", "--trials", str(args.trials * (5 if noop else 1)),
           "--epochs", str(args.epochs), "--train-clips", str(args.train_clips), "--concurrency", str(concurrency),
           "--data", str(args.data), "--split", str(args.split), *(["--noop"] if noop else [])]
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"measurement failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-clips", type=int, default=240)
    parser.add_argument("--concurrency", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--split", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # one measurement (child)
    parser.add_argument("--noop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.chdir(ROOT)
    os.environ.pop("MLFLOW_RUN_ID", None)  # a benchmark is not a pipeline run
    if args.measure:
        print(json.dumps(measure(args)))
        return
    from pipelines.team import ray_cluster

    print(f"{args.trials} trials x {args.epochs} epochs on {args.train_clips} clips, {len(os.sched_getaffinity(0))} "
          f"cores, load average {os.getloadavg()[0]:.1f} (other work on the machine counts)", flush=True)
    with tempfile.TemporaryDirectory(prefix="tune-scaling-") as scratch:
        args.data, args.split = make_dataset(Path(scratch))
        local = {"RAY_ADDRESS": ""}
        rows = {"local Ray, 1 at a time": run_measure(args, 1, local),
                "local Ray, 2 at a time": run_measure(args, 2, local)}
        with ray_cluster(Path(scratch) / "one-node", head_cpus=1) as env:
            rows["cluster, 1 node x 1 CPU"] = run_measure(args, 1, env)
        with ray_cluster(Path(scratch) / "two-node", head_cpus=1, worker_cpus=1) as env:
            rows["cluster, 2 nodes x 1 CPU"] = run_measure(args, 2, env)
            overhead = run_measure(args, 2, env, noop=True)["overhead_s"]
    for name, r in rows.items():
        print(f"{name:<26} {r['wall_s']:6.1f} s  {r['trials'] / r['wall_s'] * 60:5.2f} trials/min  ({r['epochs']} epochs)")
    local_speedup = rows["local Ray, 1 at a time"]["wall_s"] / rows["local Ray, 2 at a time"]["wall_s"]
    cluster_speedup = rows["cluster, 1 node x 1 CPU"]["wall_s"] / rows["cluster, 2 nodes x 1 CPU"]["wall_s"]
    print(f"speedup, 2 concurrent trials against 1 on local Ray: {local_speedup:.2f}x (target >= 1.6x, limit 2.0x)")
    print(f"speedup, two-node cluster against one node: {cluster_speedup:.2f}x (both nodes share this machine's cores)")
    print(f"Ray's scheduling overhead per trial (no-op trials, two-node cluster): {overhead:.2f} s; "
          f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
