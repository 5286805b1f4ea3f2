"""Bookkeeping of the tune stage: search space, study identity, trial subsets, the ledger
of finished trials that lets an interrupted search resume, and the driver-side hooks
(successive halving that gives the same decisions in any arrival order; a callback that
records each trial).

The ledger is an Optuna study in a JournalStorage file. The driver writes a trial to it
only when the trial has finished, so an interrupted search leaves a study holding just
the finished trials; a restart runs only the ones still missing and hands the finished
ones back to the sampler. Failed trials are kept (state FAIL) but do not count as done.
The rungs are not restored: trials of a resumed search are pruned only against each other.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

STATUSES = ("completed", "pruned", "failed")


def split_config(config: dict, task) -> dict:
    """A flat trial config -> {"model": model overrides, "train": train overrides}, by the
    task's model_keys and train_keys (where each searched key goes in best_config.json)."""
    return {"model": {k: config[k] for k in task.model_keys}, "train": {k: config[k] for k in task.train_keys}}


def params_config(p, task) -> dict:
    """The searched keys at their params.yaml values, shaped like a tuned best config."""
    return {"model": {k: getattr(p.model, k) for k in task.model_keys},
            "train": {k: getattr(p.train, k) for k in task.train_keys}}


def subset(ids: list[str], n: int, seed: int) -> list[str]:
    """A seeded sample of n ids, in their original order (all of them if n >= len)."""
    if n >= len(ids):
        return list(ids)
    keep = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
    return [ids[i] for i in sorted(keep)]


def study_name(prefix: str, p, trial_identity: dict, files: list[Path]) -> str:
    """Names the search by what decides its results: the search settings (not the trial
    count or concurrency: raising `trials` extends the same study), what else a trial trains
    with (the task's `trial_identity`), and the bytes of `files` (data lists, code)."""
    identity = {"tune": p.tune.model_dump(exclude={"trials", "concurrency"}), "seed": p.seed, **trial_identity}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    for path in files:
        digest.update(Path(path).read_bytes())
    return f"{prefix}-{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class TrialRecord:
    trial: int  # 0-based, in order of creation across every run of the study
    status: str  # one of STATUSES
    epochs: int
    val_loss: float | None  # the ranking loss on the val subset (the task's), best epoch
    val_score: float | None  # the task's score (e.g. frame F1, accuracy) at that epoch
    best_epoch: int | None
    config: dict  # the sampled value of every searched key

    def row(self) -> dict:
        """One trials.csv row."""
        fields = asdict(self)
        return {**{k: fields[k] for k in ("trial", "status", "epochs", "best_epoch", "val_loss", "val_score")},
                **self.config}

    def line(self) -> str:
        """One progress line."""
        score = f"val_loss {self.val_loss:.4f} (epoch {self.best_epoch})" if self.val_loss is not None else "no result"
        config = "  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.config.items())
        return f"trial {self.trial:3d}  {self.status:<10} {self.epochs} epochs  {score}  {config}"


class Ledger:
    """The persisted study: finished trials as Optuna trials, the rest as user attributes."""

    def __init__(self, journal: Path, name: str, space: dict):
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        journal.parent.mkdir(parents=True, exist_ok=True)
        self.study = optuna.create_study(study_name=name, direction="minimize", load_if_exists=True,
                                         storage=JournalStorage(JournalFileBackend(str(journal))))
        self.distributions = OptunaSearch.convert_search_space(space)  # Ray Tune domains -> Optuna

    def records(self) -> list[TrialRecord]:
        """Every recorded trial, failed ones included, by trial number."""
        records = [TrialRecord(**t.user_attrs["record"]) for t in self.study.get_trials(deepcopy=False)]
        return sorted(records, key=lambda r: r.trial)

    def finished(self) -> list[TrialRecord]:
        return [r for r in self.records() if r.status != "failed"]

    def trials_started(self) -> int:
        """Trial numbers handed out so far: the next search numbers its trials from here."""
        return self.study.user_attrs.get("trials_started", 0)

    def mark_started(self, trial: int) -> None:
        if trial >= self.trials_started():
            self.study.set_user_attr("trials_started", trial + 1)

    def add(self, record: TrialRecord) -> None:
        import optuna

        failed = record.status == "failed"
        self.study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE,
            value=None if failed else record.val_loss, params=record.config,
            distributions=self.distributions, user_attrs={"record": asdict(record)}))


def first_of_batch(index: int, free: int, size: int) -> int:
    """The first trial of `index`'s batch: the `free` startup trials come first, then
    batches of `size`. A startup trial is its own batch (it waits for no one)."""
    return index if index < free else free + (index - free) // size * size


class Batches(ConcurrencyLimiter):
    """Proposes trials so that the searcher sees the same finished trials whatever order
    they finish in, and keeps the cores busy where it can.

    The first `free` trials are the sampler's random startup trials, which do not depend on
    any result: they run `batch_size` at a time, the next proposed as soon as one finishes.
    The rest come in batches of `batch_size`: a batch is proposed once every earlier trial
    has finished, and the searcher hears of its trials all together when the whole batch
    has finished, so each batch is proposed from the same results on any machine.
    (ConcurrencyLimiter with batch=True barriers the random trials too: on 2 cores the
    short trial of each pair then waits for the long one.)
    """

    def __init__(self, searcher: Searcher, batch_size: int, free: int):
        super().__init__(searcher, max_concurrent=batch_size)
        self.batch_size, self.free = batch_size, free
        self.index: dict[str, int] = {}  # Ray trial id -> creation index in this search
        self.live: set[str] = set()  # proposed, not finished
        self.held: dict[str, tuple] = {}  # finished trials of an unfinished batch, not yet told

    def suggest(self, trial_id: str):
        n = len(self.index)
        start = first_of_batch(n, self.free, self.batch_size)
        if len(self.live) >= self.batch_size or (n >= self.free and any(self.index[t] < start for t in self.live)):
            return None  # the cores are taken, or an earlier batch is still running
        suggestion = self.searcher.suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.index[trial_id] = n
            self.live.add(trial_id)
        return suggestion

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        self.live.discard(trial_id)
        self.held[trial_id] = (result, error)
        batch = self._batch(trial_id)
        if all(self._batch(t) != batch for t in self.live):  # its batch has finished: tell them all
            for done in sorted((t for t in self.held if self._batch(t) == batch), key=self.index.get):
                result, error = self.held.pop(done)
                self.searcher.on_trial_complete(done, result=result, error=error)

    def _batch(self, trial_id: str) -> int:
        return first_of_batch(self.index[trial_id], self.free, self.batch_size)


class BatchedHalving(FIFOScheduler):
    """Successive halving whose decisions do not depend on which trial reports first.

    Trials are numbered by creation and proposed by `Batches`: the `free` random startup
    trials first, then batches of `batch_size`, each proposed when every earlier trial has
    finished. At each rung (grace_epochs x reduction_factor^k epochs, below max_epochs) a
    batch's trial goes on only if its val_loss is within the best 1/reduction_factor of the
    losses at that rung of the *earlier batches'* trials, which have all finished. The
    startup trials are never pruned: they run without a barrier, so which of them has
    reached a rung first is a matter of timing; they are the reference for the first batch.
    ASHA would compare a trial with whichever trials happened to reach the rung first, so
    the same search on a busier machine pruned other trials and could pick another best
    configuration.
    """

    def __init__(self, metric: str, max_epochs: int, grace_epochs: int, reduction_factor: int, batch_size: int,
                 free: int):
        super().__init__()
        self._metric, self._mode = metric, "min"
        self.max_epochs, self.reduction_factor = max_epochs, reduction_factor
        self.batch_size, self.free = batch_size, free
        rungs = [grace_epochs * reduction_factor ** k for k in range(max_epochs)]
        self.rungs = {r: {} for r in rungs if r < max_epochs}  # rung epoch -> {trial index: loss}
        self.index: dict[str, int] = {}  # Ray trial id -> creation index in this search
        self.pruned: set[str] = set()  # trials stopped at a rung (the rest ran max_epochs, or failed)

    def on_trial_add(self, tune_controller, trial) -> None:
        self.index[trial.trial_id] = len(self.index)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        epoch, loss = result["training_iteration"], result[self._metric]
        if epoch >= self.max_epochs:
            return self.STOP
        if epoch not in self.rungs:
            return self.CONTINUE
        me = self.index[trial.trial_id]
        recorded = self.rungs[epoch]
        recorded[me] = loss
        start = first_of_batch(me, self.free, self.batch_size)
        earlier = [v for i, v in recorded.items() if i < start]
        if me >= self.free and earlier and loss > np.nanpercentile(earlier, 100 / self.reduction_factor):
            self.pruned.add(trial.trial_id)
            return self.STOP
        return self.CONTINUE


class TrialLog(tune.Callback):
    """Driver side of each trial: numbers it, records it in the ledger when it ends,
    prints its line and closes its MLflow run (a stopped trial never closes its own)."""

    def __init__(self, ledger: Ledger, scheduler: BatchedHalving, mlflow_uri: str | None):
        self.ledger, self.scheduler = ledger, scheduler
        self.offset = ledger.trials_started()
        self.mlflow_uri = mlflow_uri

    def number(self, trial) -> int:  # Ray's experiment tag starts with the 1-based creation count
        return self.offset + int(trial.experiment_tag.split("_")[0]) - 1

    def on_trial_start(self, iteration, trials, trial, **info):
        self.ledger.mark_started(self.number(trial))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, failed=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """The trial's process or node was lost and Ray runs it again (tune.FailureConfig)."""
        error = trial.get_error()  # usually not recorded yet at this point
        reason = next((ln for ln in str(error).splitlines() if ln.strip()), "") if error else "its process or node died"
        print(f"trial {self.number(trial):3d}  lost ({reason[:160]}); running it again", flush=True)
        self._close_run(trial.last_result or {}, "lost", failed=True)

    def _finish(self, trial, failed: bool) -> None:
        r = trial.last_result or {}
        epochs = r.get("training_iteration", 0)
        status = "failed" if failed else "pruned" if trial.trial_id in self.scheduler.pruned else "completed"
        scored = "best_val_loss" in r
        record = TrialRecord(self.number(trial), status, epochs, r["best_val_loss"] if scored else None,
                             r["best_val_score"] if scored else None, r["best_epoch"] if scored else None,
                             dict(trial.config))
        self.ledger.add(record)
        print(record.line(), flush=True)
        self._close_run(r, status, failed)

    def _close_run(self, result: dict, status: str, failed: bool) -> None:
        if self.mlflow_uri and result.get("mlflow_run_id"):
            import mlflow

            client = mlflow.MlflowClient(self.mlflow_uri)
            client.set_tag(result["mlflow_run_id"], "tune.status", status)
            client.set_terminated(result["mlflow_run_id"], "FAILED" if failed else "FINISHED")
