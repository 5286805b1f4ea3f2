"""Registration depends on what the registry holds (DESIGN §3), against real MLflow stores:
a model the store lacks is registered, one it has is not registered again, and a store
that fails never looks like an empty one (which would promote anything)."""
import json

import mlflow
import pytest

from components import gate_data, register, registry
from components.config import load_params
from components.stage_cli import StageError
from components.vision.model import build_classifier, save_classifier
from conftest import PROJECT_ROOT, classifier_config, free_port

P = load_params(PROJECT_ROOT / "params.yaml").day_night
P = P.model_copy(update={"gate": P.gate.model_copy(update={"images": 200})})


@pytest.fixture(scope="module")
def gate_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("gate") / "gate"
    gate_data.run("day-night", P, out)
    return out


@pytest.fixture()
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


def classifier(path, seed):
    save_classifier(build_classifier(classifier_config(kind="mlp", hidden=(8,)), seed), path)
    return path


def versions(client):
    return sorted(int(v.version) for v in client.search_model_versions("name = 'day-night'"))


def test_empty_store_gets_a_champion_and_a_rerun_registers_nothing(store, gate_dir, tmp_path):
    model = classifier(tmp_path / "classifier.pt", seed=1)
    first = register.run("day-night", P, model, gate_dir, tmp_path / "report")
    assert first["registered"] and first["promoted"] and first["version"] == 1
    champion = store.get_model_version_by_alias("day-night", "champion")
    assert int(champion.version) == 1 and champion.tags["cs230.identity"] == register.model_identity(
        register.file_sha256(model), gate_data.read_gate_info(gate_dir)["gate_hash"])
    assert champion.tags["gate.decision"] == "promoted" and champion.tags["gate.meets_target"] in ("True", "False")

    again = register.run("day-night", P, model, gate_dir, tmp_path / "report")
    assert not again["registered"] and again["version"] == 1 and versions(store) == [1]
    decision = json.loads((tmp_path / "report" / "decision.json").read_text())
    assert decision["registered"] is False and "nothing new" in decision["summary"]


def test_a_different_model_is_a_new_version_and_a_lost_champion_alias_is_restored(store, gate_dir, tmp_path):
    one = register.run("day-night", P, classifier(tmp_path / "a" / "classifier.pt", seed=1), gate_dir, tmp_path / "r")
    two = register.run("day-night", P, classifier(tmp_path / "b" / "classifier.pt", seed=2), gate_dir, tmp_path / "r")
    assert (one["version"], two["version"]) == (1, 2) and versions(store) == [1, 2]
    assert int(store.get_model_version_by_alias("day-night", "challenger").version) == 2
    store.delete_registered_model_alias("day-night", "champion")
    again = register.run("day-night", P, tmp_path / "b" / "classifier.pt", gate_dir, tmp_path / "r")
    assert not again["registered"] and again["promoted"] and versions(store) == [1, 2]
    assert int(store.get_model_version_by_alias("day-night", "champion").version) == 2


def test_a_store_that_does_not_answer_promotes_nothing(store, gate_dir, tmp_path, monkeypatch):
    register.run("day-night", P, classifier(tmp_path / "a" / "classifier.pt", seed=1), gate_dir, tmp_path / "r")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(down)
    with pytest.raises(registry.RegistryError, match=r"^MLflow registry at http://127\.0\.0\.1"):
        registry.alias_version(registry.client(), "day-night", registry.CHAMPION)
    with pytest.raises(StageError, match="MLflow registry at"):
        register.run("day-night", P, classifier(tmp_path / "b" / "classifier.pt", seed=2), gate_dir, tmp_path / "r")
    assert versions(store) == [1] and int(store.get_model_version_by_alias("day-night", "champion").version) == 1


def test_no_champion_only_when_the_model_or_alias_is_missing(store):
    assert registry.alias_version(store, "never-registered", registry.CHAMPION) is None
    store.create_registered_model("no-alias-yet")
    assert registry.alias_version(store, "no-alias-yet", registry.CHAMPION) is None


def test_register_cli_names_missing_inputs_in_one_line(store, tmp_path, capsys):
    code = register.main(["day-night", "--model", str(tmp_path / "nothing.pt"), "--gate-data", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "nothing.pt" in err
