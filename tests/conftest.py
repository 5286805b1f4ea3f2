"""Shared fixtures: a tiny configuration and one generated dataset per test session."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]

for _key, _value in {"MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                     "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false", "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(_key, _value)

# Small enough for seconds, big enough that every family, group kind and subset appears.
TINY = {
    "speech": {"trigger_renders": 60, "random_negative_words": 20, "renders_per_negative_word": 2},
    "clips": {"main": 120, "unseen_voice": 20},
    "negative_stream": {"minutes": 5.0, "groups": 2},
    "generate": {"groups": 10, "workers": 2},
    # A gate set of seconds: ~80 trigger words and 10 minutes of audio. A model trained for
    # seconds only parts from an untrained one at a loose operating point, hence 120 FA/h.
    "gate": {"positive_clips": 40, "negative_hours": 0.1, "target_fa_per_hour": 120.0},
}


# A day-night dataset of seconds: every condition appears, the search and training only run.
DAY_NIGHT_TINY = {"generate": {"images": 240}, "gate": {"images": 200},
                  "tune": {"trials": 2, "concurrency": 2, "startup_trials": 2, "train_items": 64, "val_items": 32,
                           "max_epochs": 1, "grace_epochs": 1},
                  "train": {"max_epochs": 2}}


# A style-transfer run of seconds: 6 content images at 64 px, a width-4 network for 1 epoch, 2 Gatys steps.
STYLE_TINY = {"image_size": 64, "features": "random", "data": {"content_images": 6},
              "model": {"width": 4, "residual_blocks": 1},
              "train": {"epochs": 1, "train_size": 32, "batch_size": 4, "threads": 1},
              "tune": {"train_items": 4, "val_items": 2, "max_epochs": 1},
              "gatys": {"steps": 2}, "evaluation": {"images": 1, "frontier_weights": [10.0]},
              "gate": {"images": 4, "size": 32}}


# Per params section: what makes a whole pipeline run in seconds (tests/test_task_contract.py
# runs every registered pipeline with it). A new pipeline adds its section here.
CONTRACT_TINY = {
    "trigger_word": {**TINY, "gate": {"positive_clips": 8, "negative_hours": 0.02},
                     "tune": {"train_items": 16, "val_items": 8, "max_epochs": 1},
                     "model": {"conv_filters": 8, "gru_hidden": 16, "gru_layers": 1},
                     "train": {"max_epochs": 1, "batch_size": 16, "threads": 1}},
    "day_night": {**DAY_NIGHT_TINY, "gate": {"images": 100}, "train": {"max_epochs": 1, "threads": 1}},
    "style_transfer": STYLE_TINY,
}


def write_params(path: Path, changes: dict, day_night: dict | None = None) -> Path:
    """params.yaml of the project with `changes` merged into the trigger_word section (and
    `day_night` into the day_night section)."""
    return write_sections(path, {"trigger_word": changes, "day_night": day_night or {}})


def write_sections(path: Path, sections: dict[str, dict]) -> Path:
    """params.yaml of the project with each of `sections` merged into its params section."""
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())

    def merge(base: dict, extra: dict) -> None:
        for key, value in extra.items():
            if isinstance(value, dict):
                merge(base[key], value)
            else:
                base[key] = value

    for section, changes in sections.items():
        merge(raw[section], changes)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_params_file(tmp_path_factory) -> Path:
    return write_params(tmp_path_factory.mktemp("params") / "params.yaml", TINY)


@pytest.fixture(scope="session")
def tts_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tts-cache")


@pytest.fixture(scope="session")
def tiny_dataset(tiny_params_file, tts_cache, tmp_path_factory) -> Path:
    """A real generated dataset (generate stage, tiny config); returns its folder."""
    from components.config import load_params
    from components.tasks.trigger_word.generate import run

    out = tmp_path_factory.mktemp("dataset")
    params = load_params(tiny_params_file).trigger_word
    run(params, out / "no-raw", out / "generated", out / "report", tts_cache)
    return out / "generated"


@pytest.fixture(scope="session")
def gate_workdir(tmp_path_factory) -> Path:
    """A working directory for gate sets: their TTS renders (never the training ones) are
    cached under its .cache/tts, the project's relative cache path, not the project's own."""
    return tmp_path_factory.mktemp("gate-work")


@pytest.fixture(scope="session")
def tiny_gate(tiny_params_file, gate_workdir, tmp_path_factory) -> Path:
    """A real trigger-word gate set (gate_data stage, tiny config); returns its folder."""
    import contextlib

    from components.config import load_params
    from components.gate_data import run

    out = tmp_path_factory.mktemp("gate") / "gate"
    with contextlib.chdir(gate_workdir):
        run("trigger-word", load_params(tiny_params_file).trigger_word, out)
    return out


@pytest.fixture(scope="session")
def tiny_detectors(tiny_params_file, tiny_dataset, tmp_path_factory) -> dict[str, Path]:
    """Two real evaluated detectors (evaluate stage: own threshold, smoothing and refractory
    period) of one small architecture: "trained" for 6 epochs on the tiny dataset (seconds),
    and "untrained", its initial weights. On the tiny gate set the trained one is clearly the
    better at the gate's operating point."""
    import torch

    from components.audio.model import ModelConfig, TriggerWordModel, save_model
    from components.audio.training import ClipDataset, TrainConfig, train
    from components.config import load_params
    from components.split import read_split, run as split_run
    from components.tasks.trigger_word.scoring import evaluate

    p = load_params(tiny_params_file).trigger_word
    root = tmp_path_factory.mktemp("detectors")
    split_run("trigger-word", p, tiny_dataset, root / "split")
    torch.manual_seed(0)
    small = ModelConfig(conv_filters=16, gru_hidden=32, gru_layers=1, dropout=0.0)
    net, initial = TriggerWordModel(model_cfg=small), TriggerWordModel(model_cfg=small)
    initial.load_state_dict(net.state_dict())
    datasets = [ClipDataset(tiny_dataset, read_split(root / "split", name), samples_per_step=net.samples_per_step)
                for name in ("train", "val")]
    train(net, *datasets, TrainConfig(lr=5e-3, batch_size=16, max_epochs=6, patience=6, num_threads=1),
          on_epoch=lambda epoch, metrics: None)
    out = {}
    for name, model in (("trained", net), ("untrained", initial)):
        save_model(model, root / f"{name}.pt")
        (root / name).mkdir()
        evaluate(p, tiny_dataset, root / "split", root / f"{name}.pt", root / f"{name}-detector.pt", root / name)
        out[name] = root / f"{name}-detector.pt"
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_mlflow_server(root: Path) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port (sqlite store and artifacts under
    `root`), stopped on exit; yields its URL."""
    import subprocess
    import sys
    import time
    import urllib.request

    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen([mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One real MLflow server for the session's tests."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url
