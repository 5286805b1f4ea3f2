"""The registry gate against a real `mlflow server` on loopback: register, gate, alias moves."""
import json

import mlflow
import pytest

from components import register, registry
from components.tasks import trigger_word as task
from components.audio.model import TriggerWordModel, save_model
from components.config import GateParams, load_params
from components.split import run as split_run
from conftest import PROJECT_ROOT

P = load_params(PROJECT_ROOT / "params.yaml").trigger_word


@pytest.mark.parametrize("challenger, champion, promoted, why", [
    ({"frr": 0.05, "fa_per_hour": 0.0}, None, True, "no champion yet"),
    ({"frr": 0.05, "fa_per_hour": 0.0}, {"frr": 0.10, "fa_per_hour": 0.0}, True, "beats champion"),
    ({"frr": 0.10, "fa_per_hour": 0.0}, {"frr": 0.10, "fa_per_hour": 0.0}, False, "FRR not lower"),
    ({"frr": 0.20, "fa_per_hour": 0.0}, {"frr": 0.10, "fa_per_hour": 0.0}, False, "FRR not lower"),
    ({"frr": 0.01, "fa_per_hour": 1.0}, {"frr": 0.10, "fa_per_hour": 0.5}, False, "FA/h worse"),
])
def test_gate_decision(challenger, champion, promoted, why):
    ok, reason = task.decide(challenger, champion, P)
    assert ok is promoted and why in reason


def test_gate_margin_from_params():
    strict = P.model_copy(update={"gate": GateParams(min_frr_improvement=0.05)})
    assert not task.decide({"frr": 0.08, "fa_per_hour": 0}, {"frr": 0.10, "fa_per_hour": 0}, strict)[0]
    assert task.decide({"frr": 0.04, "fa_per_hour": 0}, {"frr": 0.10, "fa_per_hour": 0}, strict)[0]


def _detector(path, threshold, seed=0):
    import torch
    torch.manual_seed(seed)
    model = TriggerWordModel()
    model.threshold = threshold
    save_model(model, path)
    return path


@pytest.fixture()
def registry_env(mlflow_server, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(mlflow_server)
    split_run("trigger-word", P, tiny_dataset, tmp_path / "split")
    word = f"gate test {tmp_path.name[-6:].replace('_', ' ')}"
    p = P.model_copy(update={"word": "gate test"})
    return p.model_copy(update={"word": "".join(c for c in word if c.isalpha() or c == " ")}), tmp_path


def test_first_version_is_champion_and_worse_or_equal_are_not(registry_env, tiny_dataset):
    p, tmp = registry_env
    client = mlflow.MlflowClient()
    name = registry.registered_name(p.slug)
    never = _detector(tmp / "never.pt", threshold=1.01)   # fires never: FRR 1, FA/h 0
    first = register.run("trigger-word", p, never, tiny_dataset, tmp / "split", tmp / "r1")
    assert first["promoted"] and first["version"] == 1
    assert client.get_model_version_by_alias(name, "champion").version == "1"

    always = _detector(tmp / "always.pt", threshold=0.0)  # fires constantly: FA/h far worse
    second = register.run("trigger-word", p, always, tiny_dataset, tmp / "split", tmp / "r2")
    assert not second["promoted"]
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version_by_alias(name, "challenger").version == "2"
    tags = client.get_model_version(name, "2").tags
    assert tags["gate.decision"] == "rejected" and "FA/h worse" in tags["gate.reason"]

    same = register.run("trigger-word", p, never, tiny_dataset, tmp / "split", tmp / "r3")   # equal: does not take it
    assert not same["promoted"] and client.get_model_version_by_alias(name, "champion").version == "1"
    decision = json.loads((tmp / "r3" / "decision.json").read_text())
    assert "FRR not lower" in decision["reason"]

    # the registered model is a pyfunc: the champion loads and scores audio
    import numpy as np
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert model.predict(np.zeros((1, 16000), dtype=np.float32)).shape == (1, 50)


def test_better_model_takes_champion(registry_env, tiny_dataset, monkeypatch):
    """Alias move on promotion. The figures are fixed by threshold, so the test is about the
    registry mechanics (the figures themselves are covered by the evaluation tests)."""
    p, tmp = registry_env
    figures = {1.01: {"frr": 0.2, "fa_per_hour": 0.0}, 0.9: {"frr": 0.1, "fa_per_hour": 0.0}}
    monkeypatch.setattr(task, "gate_figures", lambda model, *a: {**figures[round(model.threshold, 2)],
                                                                        "threshold": model.threshold})
    client = mlflow.MlflowClient()
    name = registry.registered_name(p.slug)
    register.run("trigger-word", p, _detector(tmp / "old.pt", 1.01), tiny_dataset, tmp / "split", tmp / "r1")
    result = register.run("trigger-word", p, _detector(tmp / "new.pt", 0.9, seed=1), tiny_dataset, tmp / "split", tmp / "r2")
    assert result["promoted"]
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert "beats champion" in client.get_model_version(name, "2").tags["gate.reason"]


@pytest.mark.parametrize("metric, challenger, champion, promoted", [
    ("roc_auc", 0.995, 0.990, True), ("roc_auc", 0.990, 0.990, False), ("roc_auc", 0.980, 0.990, False),
    ("ece", 0.010, 0.020, True), ("ece", 0.030, 0.020, False), ("accuracy", 0.99, 0.98, True),
])
def test_day_night_gate_follows_the_metric_and_its_direction(metric, challenger, champion, promoted):
    from components.config import DayNightGate
    from components.tasks import day_night

    p = load_params(PROJECT_ROOT / "params.yaml").day_night
    p = p.model_copy(update={"gate": DayNightGate(metric=metric)})
    figures = {"roc_auc": 0.99, "accuracy": 0.98, "ece": 0.02, "log_loss": 0.1}
    ok, reason = day_night.decide({**figures, metric: challenger}, {**figures, metric: champion}, p)
    assert ok is promoted and metric in reason
    assert day_night.decide(figures, None, p) == (True, "no champion yet")
    strict = p.model_copy(update={"gate": DayNightGate(metric="roc_auc", min_improvement=0.01)})
    assert not day_night.decide({**figures, "roc_auc": 0.995}, figures, strict)[0]
