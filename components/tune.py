"""Stage `tune`: hyperparameter search for a pipeline's model (DESIGN §3).

Optuna's seeded TPE sampler proposes configurations from the task's search space
(`<pipeline>.tune.space`); Ray Tune runs them, one CPU and one torch thread per trial,
each on a fixed subset of the train/val splits for at most `tune.max_epochs` epochs, and
successive halving stops the unpromising ones early (hpo.BatchedHalving). The sampler's
random startup trials run `tune.concurrency` at a time, each next one as soon as a trial
finishes; the rest in batches of `tune.concurrency` (hpo.Batches). So the search, and
best_config.json, are the same whatever order trials finish in: each trial's training is
seeded and single-threaded, and ties are broken by trial number. Trials are ranked by the
val_loss the task's `fit_trial` reports (for the trigger word the unweighted BCE, as its
pos_weight is searched). Ray is local (one CPU per core) unless RAY_ADDRESS names a
cluster; a trial lost with its node or process runs once more. Under a pipeline run each
trial is an MLflow child run, tagged with the Ray node that ran it. The study is kept in .cache/tune/<study>/
(see hpo.Ledger): DVC deletes a stage's outputs before re-running it, so resumable state
lives outside them. Outputs: data/<pipeline>/tune/best_config.json (read by the train
stage), reports/<pipeline>/tune/{trials.csv, summary.json}.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from components import hpo, paths, tasks, tracking
from components.split import read_split
from components.stage_cli import StageError, stage_main, stage_parser, staged_output

CACHE_DIR = paths.TUNE_CACHE_DIR  # studies, by name; survives DVC's removal of the stage's outputs


@dataclass(frozen=True)
class ChildRuns:
    """Where trials log: the pipeline's MLflow run. Explicit, as cluster workers do not
    share the driver's environment."""
    tracking_uri: str
    parent_run_id: str
    experiment_id: str


@dataclass(frozen=True)
class TrialContext:
    pipeline: str
    params: object  # the pipeline's params section
    data_dir: str  # absolute: Ray runs each trial in its own working directory
    train_ids: list[str]
    val_ids: list[str]
    mlflow: ChildRuns | None


def trial(config: dict, ctx: TrialContext) -> None:
    """One Ray Tune trial: the task trains `config` on the subsets and reports every epoch."""
    import torch

    torch.set_num_threads(1)  # one core per trial; Ray runs the others beside it
    task = tasks.load(ctx.pipeline)
    client, run_id = None, ""
    if ctx.mlflow:
        import mlflow
        import ray
        from mlflow.entities import Metric, Param

        client = mlflow.MlflowClient(ctx.mlflow.tracking_uri)
        name = tune.get_context().get_trial_name()
        run_id = client.create_run(ctx.mlflow.experiment_id, run_name=name, tags={
            "mlflow.parentRunId": ctx.mlflow.parent_run_id, "mlflow.runName": name,
            "ray.node_id": ray.get_runtime_context().get_node_id()}).info.run_id  # which node ran it
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in {
            **config, "train_items": len(ctx.train_ids), "val_items": len(ctx.val_ids),
            "max_epochs": ctx.params.tune.max_epochs}.items()])
    best = {"val_loss": math.inf, "val_score": 0.0, "epoch": 0}

    def on_epoch(epoch: int, m: dict) -> None:
        if m["val_loss"] < best["val_loss"]:
            best.update(val_loss=m["val_loss"], val_score=m[task.score], epoch=epoch)
        if client:
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in m.items()])
        tune.report({**m, "best_val_loss": best["val_loss"], "best_val_score": best["val_score"],
                     "best_epoch": best["epoch"], "mlflow_run_id": run_id})

    task.fit_trial(ctx.params, hpo.split_config(config, task), ctx.data_dir, ctx.train_ids, ctx.val_ids, on_epoch)
    if client:
        client.set_terminated(run_id, "FINISHED")


def search(ctx: TrialContext, space: dict, ledger: hpo.Ledger, new_trials: int, storage: Path) -> None:
    """Run `new_trials` more trials of the ledger's study on the connected Ray."""
    budget, done = ctx.params.tune, ledger.finished()
    # The sampler's random startup trials still to run (the finished ones count towards them)
    # go without a barrier; the rest in batches of `concurrency` (hpo.Batches).
    free = max(0, budget.startup_trials - len(done))
    scheduler = hpo.BatchedHalving("val_loss", budget.max_epochs, budget.grace_epochs, budget.reduction_factor,
                                   budget.concurrency, free)
    log = hpo.TrialLog(ledger, scheduler, ctx.mlflow.tracking_uri if ctx.mlflow else None)
    # The sampler's seed moves on with the study, so a resumed search does not redraw the
    # random startup points it already tried; the finished trials are handed back to it.
    sampler = optuna.samplers.TPESampler(seed=ctx.params.seed + log.offset, n_startup_trials=budget.startup_trials,
                                         constant_liar=budget.concurrency > 1)
    searcher = OptunaSearch(metric="best_val_loss", mode="min", sampler=sampler,
                            points_to_evaluate=[r.config for r in done] or None,
                            evaluated_rewards=[r.val_loss for r in done] or None)
    searcher = hpo.Batches(searcher, budget.concurrency, free)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trial, ctx=ctx), {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=new_trials,
                                    reuse_actors=True,  # a finished trial's process runs the next: no re-import
                                    trial_name_creator=lambda t: f"trial-{log.number(t)}",
                                    trial_dirname_creator=lambda t: f"trial-{log.number(t)}"),
        run_config=tune.RunConfig(name=f"search-{log.offset}", storage_path=str(storage.resolve()),
                                  verbose=0, callbacks=[log],
                                  # a trial lost with its node (or its process) runs again once, elsewhere
                                  failure_config=tune.FailureConfig(max_failures=1)))
    tuner.fit()


def _start_ray(ray_address: str | None) -> bool:
    """Connect to RAY_ADDRESS's cluster, or start a local Ray on this machine's cores.
    Returns whether this call started the connection (and so must shut it down)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new reporter prints banners even at verbose=0
    import ray

    if ray.is_initialized():
        return False
    if ray_address:  # the cluster's workers need this package's code (their own env has the deps)
        import components  # and the tracking server's credentials, for the trials' child runs

        ray.init(address=ray_address, logging_level=logging.WARNING,
                 runtime_env={"py_modules": [str(Path(components.__file__).parent)], "env_vars": {
                     k: os.environ[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                                "MLFLOW_TRACKING_TOKEN") if k in os.environ}})
    else:
        # Ray renices its workers to 15; on a busy machine that starves the trials (measured:
        # a quarter to half a core each). The search is the foreground job, like training.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(address="local", num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False,
                 logging_level=logging.WARNING)
    return True


def _child_runs() -> ChildRuns | None:
    parent = tracking.pipeline_run_id()
    if parent is None:
        return None
    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):  # relative: trials run elsewhere
        uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    elif "://" not in uri and ":" not in uri:
        uri = Path(uri).resolve().as_uri()
    return ChildRuns(uri, parent, mlflow.MlflowClient(uri).get_run(parent).info.experiment_id)


def run(pipeline: str, p, data_dir: Path, split_dir: Path, out_dir: Path, report_dir: Path,
        cache_dir: Path = CACHE_DIR, ray_address: str | None = None) -> dict:
    start = time.perf_counter()
    task = tasks.load(pipeline)
    budget, name, new_trials, reported = p.tune, None, 0, []
    best = {**hpo.params_config(p, task), "val_loss": None, "trial": None}
    if budget.trials > 0:
        train_ids, val_ids = read_split(split_dir, "train"), read_split(split_dir, "val")
        if not (data_dir / "manifest.csv").is_file():
            raise StageError(f"{data_dir / 'manifest.csv'}: not found; run the generate stage first")
        space = task.search_space(budget.space)
        code = [Path(__file__), Path(hpo.__file__), Path(sys.modules[type(task).__module__].__file__), *task.trial_code()]
        name = hpo.study_name(task.study_prefix(p), p, task.trial_identity(p),
                              [data_dir / "manifest.csv", split_dir / "train.txt", split_dir / "val.txt", *code])
        ledger = hpo.Ledger(cache_dir / name / "study.journal", name, space)
        new_trials = max(0, budget.trials - len(ledger.finished()))
        print(f"study {name}: {len(ledger.finished())} trials finished, {new_trials} to run, "
              f"{budget.concurrency} at a time", flush=True)
        if new_trials:
            ctx = TrialContext(pipeline, p, str(data_dir.resolve()),
                               task.trial_subset(p, data_dir, train_ids, budget.train_items),
                               task.trial_subset(p, data_dir, val_ids, budget.val_items), _child_runs())
            started = _start_ray(ray_address)
            try:
                search(ctx, space, ledger, new_trials, cache_dir / name / "ray")
            finally:
                if started:
                    import ray
                    ray.shutdown()
        reported = ledger.finished()[:budget.trials]
        if len(reported) < budget.trials:
            raise StageError(f"tune: only {len(reported)} of {budget.trials} trials finished (interrupted, or failed: see "
                             f"above); run again to run the rest, the finished ones are kept in {cache_dir / name}")
        winner = min(reported, key=lambda r: (r.val_loss, r.trial))
        best = {**hpo.split_config(winner.config, task), "val_loss": round(winner.val_loss, 5), "trial": winner.trial}
    summary = {"trials": len(reported), **{s: sum(r.status == s for r in reported) for s in hpo.STATUSES[:2]},
               "epochs": sum(r.epochs for r in reported), "best_trial": best["trial"], "best_val_loss": best["val_loss"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / "best_config.json.partial"
    partial.write_text(json.dumps({**best, "study": name}, indent=2) + "\n")
    partial.replace(out_dir / "best_config.json")
    with staged_output(report_dir) as out:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        with open(out / "trials.csv", "w", newline="") as f:
            rows = [r.row() for r in reported]
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
            writer.writeheader()
            writer.writerows(rows)
    if reported:
        tracking.log_metrics({"tune.best_val_loss": best["val_loss"], "tune.trials": len(reported)})
        tracking.log_artifacts([report_dir / "trials.csv", out_dir / "best_config.json"], "tune")
    return {**summary, "study": name, "new_trials": new_trials, "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, help="default: data/<pipeline>/generated")
    parser.add_argument("--split", type=Path, help="default: data/<pipeline>/split")
    parser.add_argument("--out", type=Path, help="default: data/<pipeline>/tune")
    parser.add_argument("--report", type=Path, help="default: reports/<pipeline>/tune")
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help="resumable search state (default: .cache/tune)")

    def body(params, args):
        base = paths.pipeline_dir(args.pipeline)
        return run(args.pipeline, tasks.params_of(params, args.pipeline), args.data or base / "generated",
                   args.split or base / "split", args.out or base / "tune",
                   args.report or paths.reports_dir(args.pipeline) / "tune", args.cache,
                   ray_address=os.environ.get("RAY_ADDRESS"))
    return stage_main(parser, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
