"""Scaling of the tune stage on a Ray cluster: the same search on a one-node and a two-node
cluster (`ray start`, as `cs230 team up` starts it), and Ray's scheduling overhead per trial.
(2 concurrent trials against 1 on local Ray: benchmarks/tune_speedup.py.)

Both measurements run the real tune stage (`components/tune.py`) on one small dataset made
by the pipeline's own stages (tune_speedup.scratch_dataset), with the same budget: pruning
off (grace_epochs = max_epochs) and every trial a seeded random startup trial, so both train
the same configurations for the same epochs and only the scheduling differs. Each runs in its
own process (a fresh Ray driver); wall time includes connecting to the cluster. The overhead
is the wall time of no-op trials (report once, return) on the two-node cluster, divided by
their number. On one 2-core machine both nodes share the same cores: the speedup is bounded
by 2.0x, and other work on the machine lowers it.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from tune_speedup import scratch_dataset, trigger_word_params  # noqa: E402


def measure(args) -> dict:
    """One search (or the no-op trials) in this process, on RAY_ADDRESS's cluster."""
    from components import tune

    if args.noop:
        return {"overhead_s": noop_trials_seconds(args.trials) / args.trials}
    budget = [f"trigger_word.tune.trials={args.trials}", f"trigger_word.tune.startup_trials={args.trials}",
              f"trigger_word.tune.train_items={args.train_clips}", f"trigger_word.tune.val_items={args.train_clips // 4}",
              f"trigger_word.tune.max_epochs={args.epochs}", f"trigger_word.tune.grace_epochs={args.epochs}",
              f"trigger_word.tune.concurrency={args.concurrency}"]
    with tempfile.TemporaryDirectory(prefix="tune-scaling-") as work:
        started = time.perf_counter()
        result = tune.run("trigger-word", trigger_word_params(budget), args.data, args.split, Path(work) / "out",
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
        args.data, args.split = scratch_dataset(args.train_clips * 3 // 2, Path(scratch))
        rows = {}
        with ray_cluster(Path(scratch) / "one-node", head_cpus=1) as env:
            rows["1 node x 1 CPU"] = run_measure(args, 1, env)
        with ray_cluster(Path(scratch) / "two-node", head_cpus=1, worker_cpus=1) as env:
            rows["2 nodes x 1 CPU"] = run_measure(args, 2, env)
            overhead = run_measure(args, 2, env, noop=True)["overhead_s"]
    for name, r in rows.items():
        print(f"{name:<16} {r['wall_s']:6.1f} s  {r['trials'] / r['wall_s'] * 60:5.2f} trials/min  ({r['epochs']} epochs)")
    speedup = rows["1 node x 1 CPU"]["wall_s"] / rows["2 nodes x 1 CPU"]["wall_s"]
    print(f"speedup, two-node cluster against one node: {speedup:.2f}x (limit 2.0x: both nodes share this machine's cores)")
    print(f"Ray's scheduling overhead per trial (no-op trials, two-node cluster): {overhead:.2f} s; "
          f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
