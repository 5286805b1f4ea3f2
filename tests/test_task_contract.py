"""The task contract (like sklearn's check_estimator): every registered pipeline's Task,
run through the same checks on tiny data, stage by stage as the pipeline's dvc.yaml lists
them. Each hook must return what the shared stages take from it (types, keys, files); a
hook of a stage the pipeline lacks stays the base class's. A pipeline joins by being
registered (components/tasks PIPELINES) and adding its tiny params to conftest.CONTRACT_TINY."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from components import gate_data, tasks
from components.config import load_params
from components.gate import GateDecision
from components.split import read_split
from components.tasks import Task
from components.validate import Check, Table
from conftest import CONTRACT_TINY, PROJECT_ROOT, write_sections
from pipelines.stages import pipeline_stages

pytestmark = pytest.mark.timeout(300)

# The hooks each stage calls (components/tasks/__init__.py says which stage calls what).
STAGE_HOOKS = {
    "generate": ("generate",), "validate_raw": ("raw_tables",), "validate_generated": ("generated_tables",),
    "split": ("assign_splits", "describe_split"), "features": ("features",), "gate_data": ("make_gate_data",),
    "tune": ("trial_code", "search_space", "study_prefix", "trial_identity", "fit_trial"),
    "train": ("fit", "save_model", "train_summary"), "evaluate": ("evaluate",),
    "register": ("registered_name", "load_evaluated", "gate_figures", "decide", "log_model", "version_tags"),
}


def is_json(value) -> bool:
    json.dumps(value, allow_nan=True)  # raises on anything a report file could not hold
    return True


def check_tables(tables, hook: str, rows_expected: bool) -> None:
    assert isinstance(tables, list) and tables, f"{hook}: a non-empty list of Table"
    for table in tables:
        assert isinstance(table, Table) and isinstance(table.frame, pd.DataFrame), hook
        assert all(isinstance(c, Check) for c in table.checks), f"{hook}: {table.name}'s checks are Check"
        if rows_expected or len(table.frame):
            assert len(table.frame) and table.key in table.frame.columns, f"{hook}: {table.name} names rows by its key"
            for check in table.checks:
                judged = {check.kwargs[k] for k in ("column", "column_A", "column_B") if k in check.kwargs}
                assert judged <= set(table.frame.columns), f"{hook}: {check.name} judges a missing column"


def check_epochs(figures: list[dict], score: str, hook: str) -> None:
    assert figures, f"{hook}: on_epoch was called"
    for m in figures:
        assert math.isfinite(m["val_loss"]) and 0 <= m[score] <= 1, f"{hook}: val_loss and {score} each epoch"


@pytest.mark.parametrize("pipeline", sorted(tasks.PIPELINES))
def test_task_contract(pipeline, tmp_path, monkeypatch):
    task, section = tasks.load(pipeline), tasks.section(pipeline)
    assert isinstance(task, Task) and (task.name, task.section) == (pipeline, section)
    if section not in CONTRACT_TINY:
        pytest.fail(f"add the {section} section's tiny params to tests/conftest.py CONTRACT_TINY")
    p = tasks.params_of(load_params(write_sections(tmp_path / "params.yaml", {section: CONTRACT_TINY[section]})),
                        pipeline)
    monkeypatch.chdir(tmp_path)  # caches the task keeps under the project (.cache/) land here
    stages = {s.short for s in pipeline_stages(pipeline, PROJECT_ROOT / "dvc.yaml")}
    assert stages <= set(STAGE_HOOKS), f"stages without a contract: {stages - set(STAGE_HOOKS)}"
    for stage, hooks in STAGE_HOOKS.items():  # optional hooks are explicit: overridden exactly for its stages
        for hook in hooks:
            overridden = getattr(type(task), hook) is not getattr(Task, hook)
            assert overridden == (stage in stages), f"{hook}: {'missing' if stage in stages else 'unused'} ({stage})"
    data, raw = tmp_path / "generated", tmp_path / "no-raw"

    if "validate_raw" in stages:
        assert isinstance(task.raw_dir, Path)
        check_tables(task.raw_tables(p, raw, 0), "raw_tables", rows_expected=False)  # no raw inputs: passes
    figures = task.generate(p, raw, data, tmp_path / "generate")
    assert is_json(figures) and (data / "manifest.csv").is_file()
    assert {"summary.json", "examples.png"} <= {f.name for f in (tmp_path / "generate").iterdir()}
    check_tables(task.generated_tables(p, data, 0), "generated_tables", rows_expected=True)

    # split, as components/split.py writes it
    manifest = pd.read_csv(data / "manifest.csv")
    assert {"train", "val"} <= set(task.splits) and task.id_column in manifest.columns
    assert manifest[task.id_column].is_unique
    split = task.assign_splits(manifest, p)
    assert isinstance(split, pd.Series) and split.index.equals(manifest.index) and set(split) <= set(task.splits)
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    for name in task.splits:
        rows = manifest[split == name]
        assert is_json(task.describe_split(rows))
        (split_dir / f"{name}.txt").write_text("".join(f"{i}\n" for i in rows[task.id_column]))
    train_ids, val_ids = read_split(split_dir, "train"), read_split(split_dir, "val")
    assert train_ids and val_ids

    if "tune" in stages:  # hpo.params_config reads the searched keys from the model and train sections
        assert set(task.model_keys) <= set(type(p.model).model_fields) and set(task.train_keys) <= set(type(p.train).model_fields)
        assert set(task.search_space(p.tune.space)) == {*task.model_keys, *task.train_keys}
        assert isinstance(task.study_prefix(p), str) and is_json(task.trial_identity(p))
        assert all(path.is_file() for path in task.trial_code())
        chosen = {"model": {k: getattr(p.model, k) for k in task.model_keys},
                  "train": {k: getattr(p.train, k) for k in task.train_keys}}
        subset = task.trial_subset(p, data, train_ids, 1)  # ids of the split, in its order
        assert subset and subset == [i for i in train_ids if i in set(subset)]
        assert task.trial_subset(p, data, train_ids, len(train_ids)) == train_ids
        trial_epochs = []
        task.fit_trial(p, chosen, str(data.resolve()), train_ids[:16], val_ids[:8], lambda e, m: trial_epochs.append(m))
        check_epochs(trial_epochs, task.score, "fit_trial")

    # train, as components/train.py uses it
    epochs = []
    model, result = task.fit(p, data, split_dir, {}, lambda e, m: epochs.append(m))
    check_epochs(epochs, task.score, "fit")
    assert result.history and 1 <= result.best_epoch <= len(result.history)
    assert {"train_loss", "val_loss", task.score, "lr", "epoch_s"} <= set(result.history[0])
    assert isinstance(result.stop_reason, str) and isinstance(result.threads, int) and result.seconds >= 0
    assert is_json(task.train_summary(model, result.history[result.best_epoch - 1]))
    task.save_model(model, tmp_path / "model.pt")
    assert (tmp_path / "model.pt").stat().st_size > 0

    # evaluate
    evaluated, report = tmp_path / task.evaluated_file, tmp_path / "evaluate"
    report.mkdir()
    headline, metrics = task.evaluate(p, data, split_dir, tmp_path / "model.pt", evaluated, report)
    assert isinstance(headline, dict) and headline and isinstance(metrics, dict) and is_json({**headline, **metrics})
    assert evaluated.stat().st_size > 0

    # gate_data (through the stage, which adds gate.json) and register
    if "gate_data" in stages:
        gate = tmp_path / "gate"
        info = gate_data.run(pipeline, p, gate)
        assert is_json(info)
    if "register" in stages:
        assert isinstance(task.registered_name(p), str) and task.registered_name(p)
        tags = task.version_tags(p)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
        judged = task.gate_figures(task.load_evaluated(str(evaluated)), p, gate)
        assert is_json(judged) and judged["gate_hash"] == info["gate_hash"] and isinstance(judged["meets_target"], bool)
        first = task.decide(judged, None, p)
        assert isinstance(first, GateDecision) and first.promote, "the first version becomes champion"
        assert not task.decide(judged, judged, p).promote, "an equal model never wins"
