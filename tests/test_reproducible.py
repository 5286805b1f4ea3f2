"""Specification of reproducible training: budgets are epochs, never minutes, so the train
stage writes byte-identical model files for the same params and thread count however busy
the machine is; the only wall-clock limit is a safety stop that fails the stage loudly."""
import hashlib
import subprocess
import sys

import pytest

from components import train
from components.config import load_params
from conftest import write_params
from test_training import make_fake_dataset

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def busy_core():
    """Another process spinning on a CPU core for the duration of the test."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def toy_split(tmp_path_factory):
    """A generated trigger-word dataset in the real layout (tone bursts as the word) and its split."""
    root = tmp_path_factory.mktemp("toy-clips")
    ids = make_fake_dataset(root / "generated", n_clips=21)
    (root / "split").mkdir()
    (root / "split" / "train.txt").write_text("\n".join(ids[:14]) + "\n")
    (root / "split" / "val.txt").write_text("\n".join(ids[14:20]) + "\n")
    return root / "generated", root / "split"


def trigger_word_params(tmp_path, **train_changes):
    path = write_params(tmp_path / "params.yaml", {
        "model": {"conv_filters": 16, "gru_hidden": 16, "gru_layers": 1},
        "train": {"max_epochs": 3, "patience": 3, "batch_size": 4, "threads": 2, **train_changes}})
    return path, load_params(path).trigger_word


def test_trigger_word_training_on_a_busy_machine_gives_the_same_model_file(toy_split, tmp_path, busy_core):
    data, split = toy_split
    _, p = trigger_word_params(tmp_path)
    runs = [train.run("trigger-word", p, data, split, None, tmp_path / f"run{i}" / "model.pt",
                      tmp_path / f"run{i}" / "report") for i in (0, 1)]
    assert busy_core.poll() is None  # the other process really ran throughout
    assert runs[0]["epochs"] == runs[1]["epochs"] == 3 and runs[0]["threads"] == 2
    for out in ("model.pt", "report/metrics.json", "report/history.csv", "report/curves.png"):  # every DVC out
        assert sha256(tmp_path / "run0" / out) == sha256(tmp_path / "run1" / out), out


@pytest.fixture(scope="module")
def scenes_split(tmp_path_factory):
    """A tiny rendered day-night dataset and its stratified split, by the real stages."""
    from components import split
    from components.tasks.day_night import generate as generate_scenes

    root = tmp_path_factory.mktemp("scenes")
    p = load_params(write_params(root / "params.yaml", {}, {"generate": {"images": 240}})).day_night
    generate_scenes.run(p, root / "no-raw", root / "generated", root / "report")
    split.run("day-night", p, root / "generated", root / "split")
    return root / "generated", root / "split"


def test_day_night_training_on_a_busy_machine_gives_the_same_model_file(scenes_split, tmp_path, busy_core):
    data, split = scenes_split
    path = write_params(tmp_path / "params.yaml", {}, {
        "model": {"kind": "cnn", "cnn_channels": [4, 8], "dropout": 0.2},
        "train": {"max_epochs": 3, "patience": 3, "batch_size": 16, "threads": 2}})
    p = load_params(path).day_night
    runs = [train.run("day-night", p, data, split, None, tmp_path / f"run{i}" / "model.pt",
                      tmp_path / f"run{i}" / "report") for i in (0, 1)]
    assert busy_core.poll() is None
    assert runs[0]["epochs"] == runs[1]["epochs"] == 3 and runs[0]["threads"] == 2
    for out in ("model.pt", "report/metrics.json", "report/history.csv", "report/curves.png"):
        assert sha256(tmp_path / "run0" / out) == sha256(tmp_path / "run1" / out), out


def test_the_safety_stop_fails_the_stage_loudly_and_writes_no_model(toy_split, tmp_path, capsys):
    data, split = toy_split
    params_file, _ = trigger_word_params(tmp_path, safety_minutes=1e-6)
    model = tmp_path / "model.pt"
    code = train.main(["trigger-word", "--params", str(params_file), "--data", str(data), "--split", str(split),
                       "--best-config", str(tmp_path / "none.json"), "--model-out", str(model),
                       "--report", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 2 and not model.exists() and not (tmp_path / "report").exists()
    assert err.startswith("error: trigger_word.train.safety_minutes: training passed its safety stop")
    assert len(err.strip().splitlines()) == 1



@pytest.mark.parametrize("key", ["trigger_word.train.max_minutes", "trigger_word.tune.trial_minutes",
                                 "trigger_word.export.prune_max_minutes", "day_night.train.max_minutes"])
def test_the_old_time_budgets_are_rejected_by_name(tmp_path, key):
    from components.config import ParamsError

    section, *middle, name = key.split(".")
    changes = {middle[0]: {name: 1.0}}
    path = write_params(tmp_path / "params.yaml", *((changes, {}) if section == "trigger_word" else ({}, changes)))
    with pytest.raises(ParamsError, match=f"{key}: unknown key"):
        load_params(path)
