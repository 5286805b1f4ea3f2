"""The register stage against a real `mlflow server` on loopback: register, gate, alias moves.
(The gate's decisions themselves, on real models, are specified in test_gate.py.)"""
import json

import mlflow
import numpy as np
import pytest

from components import register
from components.config import load_params
from components.detect import registered_name


@pytest.fixture()
def registry_env(mlflow_server, tiny_params_file, tmp_path, monkeypatch):
    """The tiny params under a word of its own (a fresh registered model per test)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(mlflow_server)
    word = "gate test " + "".join(c for c in tmp_path.name[-6:] if c.isalpha())
    return load_params(tiny_params_file).trigger_word.model_copy(update={"word": word}), tmp_path


def test_first_version_is_champion_then_equal_is_not_and_better_is(registry_env, tiny_gate, tiny_detectors):
    p, tmp = registry_env
    client = mlflow.MlflowClient()
    name = registered_name(p.slug)
    first = register.run("trigger-word", p, tiny_detectors["untrained"], tiny_gate, tmp / "r1")
    assert first["promoted"] and first["version"] == 1
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    tags = client.get_model_version(name, "1").tags
    assert tags["gate.gate_hash"] == json.loads((tiny_gate / "gate.json").read_text())["gate_hash"]
    assert tags["gate.meets_target"] == "False" and "does NOT meet the target" in tags["gate.target_note"]

    # the same weights in another file (its archive name differs): a new version, an equal model
    from components.audio.model import load_model, save_model
    save_model(load_model(tiny_detectors["untrained"]), tmp / "equal.pt")
    same = register.run("trigger-word", p, tmp / "equal.pt", tiny_gate, tmp / "r2")
    assert same["registered"] and same["version"] == 2
    assert not same["promoted"] and client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version_by_alias(name, "challenger").version == "2"
    decision = json.loads((tmp / "r2" / "decision.json").read_text())
    assert "FRR not lower beyond noise" in decision["reason"] and decision["challenger"]["det"]

    better = register.run("trigger-word", p, tiny_detectors["trained"], tiny_gate, tmp / "r3")
    assert better["promoted"] and client.get_model_version_by_alias(name, "champion").version == "3"
    assert "beats champion" in client.get_model_version(name, "3").tags["gate.reason"]

    # the registered model is a pyfunc: the champion loads and scores audio
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert model.predict(np.zeros((1, 16000), dtype=np.float32)).shape == (1, 50)
