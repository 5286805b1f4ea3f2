"""Specification of the tune stage: a seeded search on local Ray writes a best config from
inside the search space and one row per trial, logs every trial as an MLflow child run of
the pipeline run, resumes without re-training finished trials, and passes the params'
own values on when disabled."""
import csv
import json
import math

import pytest
from ray.tune.search import Searcher

from components import hpo, tune
from components.tasks.trigger_word import TASK as task
from components.config import load_params
from conftest import write_params

pytestmark = pytest.mark.timeout(300)

# Tiny budgets: the point is the wiring, not the model.
SEARCH = {"concurrency": 2, "startup_trials": 1, "train_items": 16, "val_items": 8, "max_epochs": 2,
          "space": {"lr": [0.001, 0.01], "gru_hidden": [8, 16], "gru_layers": [1, 2], "conv_filters": [8, 16],
                    "dropout": [0.0, 0.2], "pos_weight": [2.0, 8.0], "batch_size": [4, 8]}}


def params(tmp_path, trials: int, **changes):
    path = write_params(tmp_path / f"params-{trials}.yaml", {"tune": {**SEARCH, "trials": trials, **changes}})
    return load_params(path).trigger_word


def read_rows(report_dir):
    with open(report_dir / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def split_dir(tiny_dataset, tiny_params_file, tmp_path_factory):
    from components import split

    p = load_params(tiny_params_file).trigger_word
    out = tmp_path_factory.mktemp("split") / "split"
    split.run("trigger-word", p, tiny_dataset, out)
    return out


@pytest.fixture(scope="module")
def searched(tiny_dataset, split_dir, tmp_path_factory):
    """Under a pipeline run: a 2-trial search (both trials at once), the same study raised
    to 3 trials (what resuming an interrupted 3-trial search does), then the same again."""
    import mlflow

    work = tmp_path_factory.mktemp("tune")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
        client = mlflow.MlflowClient()
        experiment = client.create_experiment("tune-test", artifact_location=(work / "artifacts").as_uri())
        parent = client.create_run(experiment, run_name="pipeline").info.run_id
        mp.setenv("MLFLOW_RUN_ID", parent)
        runs = []
        for i, trials in enumerate((2, 3, 3)):
            out, report = work / f"out{i}", work / f"report{i}"
            result = tune.run("trigger-word", params(work, trials), tiny_dataset, split_dir, out, report, work / "cache")
            runs.append({"result": result, "best": json.loads((out / "best_config.json").read_text()),
                         "rows": read_rows(report), "summary": json.loads((report / "summary.json").read_text())})
        client.set_terminated(parent)
    return {"runs": runs, "client": client, "experiment": experiment, "parent": parent, "work": work}


def test_best_config_is_a_point_of_the_search_space(searched):
    best, rows = searched["runs"][0]["best"], searched["runs"][0]["rows"]
    space = SEARCH["space"]
    assert set(best["model"]) == set(task.model_keys) and set(best["train"]) == set(task.train_keys)
    for key in ("gru_hidden", "gru_layers", "conv_filters"):
        assert best["model"][key] in space[key]
    assert best["train"]["batch_size"] in space["batch_size"]
    for section, key in (("train", "lr"), ("train", "pos_weight"), ("model", "dropout")):
        assert space[key][0] <= best[section][key] <= space[key][1]
    winner = min(rows, key=lambda r: float(r["val_loss"]))
    assert best["trial"] == int(winner["trial"])
    assert math.isclose(best["val_loss"], float(winner["val_loss"]), abs_tol=1e-5)


def test_train_stage_reads_the_best_config(searched):
    from components.tasks.trigger_word.fitting import build_model, train_config

    best = searched["runs"][0]["best"]
    p = load_params(write_params(searched["work"] / "plain.yaml", {})).trigger_word
    model = build_model(p, best["model"])
    assert model.model_cfg.gru_hidden == best["model"]["gru_hidden"]
    assert train_config(p, best["train"]).lr == best["train"]["lr"]


def test_one_row_per_trial_with_status_and_epochs(searched):
    rows = searched["runs"][0]["rows"]
    assert [int(r["trial"]) for r in rows] == [0, 1]
    for r in rows:
        assert r["status"] in ("completed", "pruned")
        assert 1 <= int(r["epochs"]) <= SEARCH["max_epochs"]
        assert (r["status"] == "completed") == (int(r["epochs"]) == SEARCH["max_epochs"])
        assert set(task.model_keys + task.train_keys) <= set(r)
    summary = searched["runs"][0]["summary"]
    assert summary["trials"] == 2 and summary["completed"] + summary["pruned"] == 2
    assert not any("second" in k or k.endswith("_s") for k in summary)  # metrics stay deterministic


def test_each_trial_is_a_child_run_of_the_pipeline_run(searched):
    client, parent = searched["client"], searched["parent"]
    children = client.search_runs([searched["experiment"]], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.info.run_name for r in children) == ["trial-0", "trial-1", "trial-2"]
    rows = {f"trial-{r['trial']}": r for r in searched["runs"][1]["rows"]}
    for run in children:
        row = rows[run.info.run_name]
        assert run.info.status == "FINISHED"
        assert run.data.tags["tune.status"] == row["status"]
        assert set(task.model_keys + task.train_keys) <= set(run.data.params)
        assert float(run.data.params["lr"]) == pytest.approx(float(row["lr"]))
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == list(range(1, int(row["epochs"]) + 1))
        assert min(m.value for m in history) == pytest.approx(float(row["val_loss"]))
    assert client.get_run(parent).data.metrics["tune.trials"] == 3


def test_resume_runs_only_the_missing_trials(searched):
    first, resumed, again = (r["result"] for r in searched["runs"])
    assert first["study"] == resumed["study"] == again["study"]  # the trial count is not part of its name
    assert (first["new_trials"], resumed["new_trials"], again["new_trials"]) == (2, 1, 0)
    assert searched["runs"][0]["rows"] == searched["runs"][1]["rows"][:2]  # kept, not re-run
    assert [int(r["trial"]) for r in searched["runs"][1]["rows"]] == [0, 1, 2]
    assert searched["runs"][2]["rows"] == searched["runs"][1]["rows"]
    assert searched["runs"][2]["best"] == searched["runs"][1]["best"]
    ray_runs = sorted(p.name for p in (searched["work"] / "cache" / first["study"] / "ray").iterdir())
    assert ray_runs == ["search-0", "search-2"]  # named by the first trial; the third call started none


def test_zero_trials_passes_the_params_values_on(tmp_path):
    p = params(tmp_path, 0)
    result = tune.run("trigger-word", p, tmp_path / "no-data", tmp_path / "no-split", tmp_path / "out", tmp_path / "report",
                      tmp_path / "cache")
    best = json.loads((tmp_path / "out" / "best_config.json").read_text())
    assert best["model"] == {k: getattr(p.model, k) for k in task.model_keys}
    assert best["train"] == {k: getattr(p.train, k) for k in task.train_keys}
    assert best["val_loss"] is None and result["trials"] == 0
    assert read_rows(tmp_path / "report") == [] and not (tmp_path / "cache").exists()


def test_study_name_follows_the_space_and_data_not_the_trial_count(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("a\nb\n")
    def name_of(p):
        return hpo.study_name(task.study_prefix(p), p, task.trial_identity(p), [data])

    name = name_of(params(tmp_path, 2))
    assert name_of(params(tmp_path, 8, concurrency=1)) == name
    assert name_of(params(tmp_path, 2, max_epochs=3)) != name
    data.write_text("a\nc\n")
    assert name_of(params(tmp_path, 2)) != name


def test_subsets_are_seeded_and_keep_split_order():
    ids = [f"clip{i:03d}" for i in range(100)]
    picked = hpo.subset(ids, 10, seed=0)
    assert picked == hpo.subset(ids, 10, seed=0) != hpo.subset(ids, 10, seed=1)
    assert picked == sorted(picked) and len(set(picked)) == 10
    assert hpo.subset(ids[:5], 10, seed=0) == ids[:5]


def test_search_space_is_validated(tmp_path):
    from components.config import ParamsError

    with pytest.raises(ParamsError, match="tune.space: lr must be"):
        params(tmp_path, 2, space={**SEARCH["space"], "lr": [0.01, 0.001]})
    with pytest.raises(ParamsError, match="tune.space.gru_layers"):
        params(tmp_path, 2, space={**SEARCH["space"], "gru_layers": [9]})


def halving_run(order: list[tuple[int, int]], losses: dict[int, list[float]]) -> tuple[set[int], dict[int, int]]:
    """Feed BatchedHalving each (trial, epoch) result in `order` (skipping trials it has
    stopped); returns the pruned trials and the epochs each ran. Trials 0-1 are the random
    startup trials, then batches of 2."""
    from ray.tune.experiment import Trial

    scheduler = hpo.BatchedHalving("val_loss", max_epochs=4, grace_epochs=1, reduction_factor=2, batch_size=2,
                                   free=2)
    trials = [Trial("__fake", stub=True) for _ in losses]
    for t in trials:
        scheduler.on_trial_add(None, t)
    ran, stopped = {i: 0 for i in losses}, set()
    for i, epoch in order:
        if i in stopped:
            continue
        ran[i] = epoch
        if scheduler.on_trial_result(None, trials[i], {"training_iteration": epoch,
                                                       "val_loss": losses[i][epoch - 1]}) == scheduler.STOP:
            stopped.add(i)
    return {i for i, t in enumerate(trials) if t.trial_id in scheduler.pruned}, ran


def test_halving_decisions_do_not_depend_on_which_trial_reports_first():
    """Trials 0-1 are the startup trials, 2-3 the first batch, 4-5 the second. ASHA would
    let trial 1 be pruned by trial 0 had 0 reached a rung first; here a trial is only judged
    against the finished earlier batches, so any interleaving gives the same result."""
    losses = {0: [0.5, 0.4, 0.3, 0.2], 1: [0.9, 0.8, 0.7, 0.6], 2: [0.6, 0.5, 0.45, 0.4],
              3: [0.95, 0.9, 0.9, 0.9], 4: [0.3, 0.2, 0.1, 0.05], 5: [0.6, 0.7, 0.8, 0.9]}
    results = []
    for first, second in ((0, 1), (1, 0)):  # within each batch, who reports each epoch first
        order = [(i, epoch) for batch in ((0, 1), (2, 3), (4, 5)) for epoch in range(1, 5)
                 for i in (batch if first == 0 else batch[::-1])]
        results.append(halving_run(order, losses))
    one_by_one = [(i, epoch) for i in losses for epoch in range(1, 5)]  # each trial runs to its end in turn
    results.append(halving_run(one_by_one, losses))
    assert results[0] == results[1] == results[2]
    pruned, ran = results[0]
    assert pruned == {3, 5} and ran == {0: 4, 1: 4, 2: 4, 3: 1, 4: 4, 5: 2}


class Recorder(Searcher):
    """A searcher that proposes trial numbers and records what it had been told at each."""

    def __init__(self):
        super().__init__(metric="best_val_loss", mode="min")
        self.told: list[str] = []
        self.seen: dict[int, set[str]] = {}

    def suggest(self, trial_id):
        n = len(self.seen)
        self.seen[n] = set(self.told)
        return {"n": n}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append(trial_id)


def drive(batches: hpo.Batches, trials: int, finish) -> tuple[dict[int, set[int]], list[set[int]]]:
    """Runs `trials` trials through `batches` as Ray would: propose while it gives trials,
    then finish the live trial `finish` picks. Returns what the searcher had been told (as
    trial numbers) when each trial was proposed, and the live trials after each proposal round."""
    live, rounds, proposed = set(), [], 0
    while proposed < trials or live:
        while proposed < trials and batches.suggest(f"t{proposed}") is not None:
            live.add(proposed)
            proposed += 1
        rounds.append(set(live))
        done = finish(sorted(live))
        live.discard(done)
        batches.on_trial_complete(f"t{done}", {"best_val_loss": 0.0})
    seen = {n: {int(t[1:]) for t in told} for n, told in batches.searcher.seen.items()}
    return seen, rounds


def test_startup_trials_run_without_a_barrier_and_batches_see_the_same_results():
    """3 random startup trials, then batches of 2: whichever trial finishes first, each
    batch is proposed from exactly the trials before it, while a startup trial starts as
    soon as any trial finishes (ConcurrencyLimiter(batch=True) would wait for both)."""
    seen = {}
    for name, finish in (("oldest first", min), ("newest first", max)):
        seen[name], rounds = drive(hpo.Batches(Recorder(), batch_size=2, free=3), 7, finish)
        assert all(len(r) <= 2 for r in rounds)
    after_startup = [{n: s[n] for n in (3, 4, 5, 6)} for s in seen.values()]  # startup trials ignore results
    assert after_startup[0] == after_startup[1] == {3: {0, 1, 2}, 4: {0, 1, 2}, 5: set(range(5)), 6: set(range(5))}
    assert seen["oldest first"][2] != seen["newest first"][2]  # what a startup trial was told does vary
    _, rounds = drive(hpo.Batches(Recorder(), batch_size=2, free=3), 7, max)
    assert {0, 2} in rounds  # trial 2 started while trial 0 still ran: no barrier among startup trials
