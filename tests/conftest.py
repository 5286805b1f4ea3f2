"""Shared fixtures: a tiny configuration and one generated dataset per test session.

The suite runs in parallel (`make test`: pytest-xdist, `-n 3 --dist loadfile`). Rules for a
test file to be safe there:
- Each test file runs whole on one worker, in its order (`--dist loadfile`), so its module
  fixtures are built once. Tests of several files cannot share one worker: share through
  `shared_dir` or keep them in one file.
- Expensive session data comes from `shared_dir` (built once for ALL workers, under a file
  lock): tiny_dataset, tiny_gate, tiny_detectors, tts_cache. Tests only read it (tts_cache:
  test_generate adds renders; writes are atomic renames).
- Ports: `free_port()`, never a fixed one. Files, MLflow stores, DVC remotes, PREFECT_HOME and
  `.cache/cs230-run`: under tmp_path or a clone (clone_project, below), never PROJECT_ROOT.
  Each worker has its own PREFECT_HOME (set below) and its own local Ray (`ray.init` "local").
- A file that runs for minutes goes into SLOWEST_FIRST, so that it starts first.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]

for _key, _value in {"MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                     "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false", "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(_key, _value)

# Real face photos beside the project (evaluation data, never trained on; see its README).
YALE = PROJECT_ROOT.parent / "shared" / "data" / "faces" / "yale"
needs_yale = pytest.mark.skipif(not YALE.is_dir(), reason="needs ../shared/data/faces/yale (real photos)")

# Files that take minutes, longest first (measured under `make test`): under xdist they start
# first, on different workers, and the short files fill in around them.
SLOWEST_FIRST = ("test_flow.py", "test_team.py", "test_flow_pipelines.py", "test_safe_runs.py", "test_serve.py", "test_tune.py", "test_dvc.py")


def pytest_collection_modifyitems(config, items) -> None:
    """Slowest files first (xdist hands out files in this order: --no-loadscope-reorder)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept within


def pytest_configure(config) -> None:
    """Each process (each xdist worker) gets its own PREFECT_HOME: no two share Prefect's
    database or settings; removed at exit."""
    home = tempfile.mkdtemp(prefix="cs230-test-prefect-")
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))
    os.environ["PREFECT_HOME"] = home
    # three workers start ephemeral Prefect servers at once on 2 cores: give each the 180 s `cs230` gives
    # (the default 20 s timed out in the CI-style run: 9 errors)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def shared_dir(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """`build(folder)` once per test session, for every xdist worker: the first to get here
    builds it in the session's common temp folder (under a file lock), the others wait and
    reuse it. Without xdist, a plain session folder."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-N/, the parent of every worker's popen-gwK/
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder

# Small enough for seconds, big enough that every family, group kind and subset appears.
TINY = {
    "speech": {"trigger_renders": 60, "random_negative_words": 20, "renders_per_negative_word": 2},
    "clips": {"main": 120, "unseen_voice": 20},
    "negative_stream": {"minutes": 5.0, "groups": 2},
    "generate": {"groups": 10, "workers": 2},
    # 120 main clips over 8 training families (~15 each): chance alone moves a family's count
    # by more than half of that, so the balance check gets a tiny dataset's tolerance.
    "validation": {"family_balance_tolerance": 0.8},
    # A gate set of seconds: ~80 trigger words and 10 minutes of audio. A model trained for
    # seconds only parts from an untrained one at a loose operating point, hence 120 FA/h.
    "gate": {"positive_clips": 40, "negative_hours": 0.1, "target_fa_per_hour": 120.0},
}


# A day-night dataset of seconds: every condition appears, the search and training only run.
DAY_NIGHT_TINY = {"generate": {"images": 240, "unseen_style_images": 40}, "gate": {"images": 200},
                  "tune": {"trials": 2, "concurrency": 2, "startup_trials": 2, "train_items": 64, "val_items": 32,
                           "max_epochs": 1, "grace_epochs": 1},
                  "train": {"max_epochs": 2}}


# A style-transfer run of seconds: 6 content images at 64 px, a width-4 network for 1 epoch, 2 Gatys steps.
STYLE_TINY = {"image_size": 64, "features": "random", "data": {"content_images": 6},
              "model": {"width": 4, "residual_blocks": 1},
              "train": {"epochs": 1, "crop_size": 32, "batch_size": 4, "threads": 1},
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
    "face": {"generate": {"identities": 12, "images_per_identity": [5, 6], "workers": 1},
             "gate": {"identities": 10, "images_per_identity": 3}},
    "style_transfer": STYLE_TINY,
}


def train_params(pipeline: str, **overrides):
    """params.yaml's <pipeline>.train section on one thread, with `overrides` (validated): what
    the trainers' own tests train with."""
    from components.config import load_params

    section = getattr(load_params(), pipeline).train
    return type(section).model_validate({**section.model_dump(), "threads": 1, **overrides})


def trigger_word_model(**model_overrides):
    """A TriggerWordModel (random weights) of params.yaml's trigger_word features and model
    sections, `model_overrides` laid over the model's sizes."""
    from components.audio.features import FeatureConfig
    from components.audio.model import ModelConfig, TriggerWordModel
    from components.config import load_params

    p = load_params().trigger_word
    return TriggerWordModel(FeatureConfig.from_params(p), ModelConfig.from_params(p.model, **model_overrides))


def classifier_config(**fields):
    """params.yaml's day_night classifier (ClassifierConfig.from_params) with `fields` replaced."""
    import dataclasses

    from components.config import load_params
    from components.vision.model import ClassifierConfig

    return dataclasses.replace(ClassifierConfig.from_params(load_params().day_night), **fields)


def write_params(path: Path, changes: dict, day_night: dict | None = None) -> Path:
    """params.yaml of the project with `changes` merged into the trigger_word section (and
    `day_night` into the day_night section)."""
    return write_sections(path, {"trigger_word": changes, "day_night": day_night or {}})


def write_sections(path: Path, sections: dict[str, dict]) -> Path:
    """params.yaml of the project with each of `sections` merged into its params section."""
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())

    def merge(base: dict, extra: dict) -> None:
        for key, value in extra.items():
            if isinstance(value, dict):  # a section params.yaml leaves to its defaults is added
                merge(base.setdefault(key, {}), value)
            else:
                base[key] = value

    for section, changes in sections.items():
        merge(raw[section], changes)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def mlflow_follows_the_environment():
    """Each test starts with MLflow's tracking URI read from MLFLOW_TRACKING_URI: an earlier
    `mlflow.set_tracking_uri` (a test's, or a module fixture's teardown) must not send this
    test's runs to its store."""
    if "mlflow" in sys.modules:
        from mlflow.tracking._tracking_service import utils

        utils._tracking_uri = None  # what set_tracking_uri sets; unset, MLflow reads the environment
    yield


@pytest.fixture(scope="session")
def tiny_params_file(tmp_path_factory) -> Path:
    return shared_dir(tmp_path_factory, "params", lambda out: write_params(out / "params.yaml", TINY)) / "params.yaml"


@pytest.fixture(scope="session")
def tts_cache(tmp_path_factory) -> Path:
    return shared_dir(tmp_path_factory, "tts-cache", lambda out: None)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_params_file, tts_cache, tmp_path_factory) -> Path:
    """A real generated dataset (generate stage, tiny config); returns its folder."""
    from components.config import load_params
    from components.tasks.trigger_word.generate import run

    def build(out: Path) -> None:
        run(load_params(tiny_params_file).trigger_word, out / "no-raw", out / "generated", out / "report", tts_cache)

    return shared_dir(tmp_path_factory, "dataset", build) / "generated"


@pytest.fixture(scope="session")
def gate_workdir(tmp_path_factory) -> Path:
    """A working directory for gate sets: their TTS renders (never the training ones) are
    cached under its .cache/tts, the project's relative cache path, not the project's own.
    One per worker: test_gate renders into it while other workers may build tiny_gate."""
    return tmp_path_factory.mktemp("gate-work")


@pytest.fixture(scope="session")
def tiny_gate(tiny_params_file, gate_workdir, tmp_path_factory) -> Path:
    """A real trigger-word gate set (gate_data stage, tiny config); returns its folder."""
    import contextlib

    from components.config import load_params
    from components.gate_data import run

    def build(out: Path) -> None:
        with contextlib.chdir(gate_workdir):
            run("trigger-word", load_params(tiny_params_file).trigger_word, out / "gate")

    return shared_dir(tmp_path_factory, "gate", build) / "gate"


@pytest.fixture(scope="session")
def tiny_detectors(tiny_params_file, tiny_dataset, tmp_path_factory) -> dict[str, Path]:
    """Two real evaluated detectors (evaluate stage: own threshold, smoothing and refractory
    period) of one small architecture: "trained" for 6 epochs on the tiny dataset (seconds),
    and "untrained", its initial weights. On the tiny gate set the trained one is clearly the
    better at the gate's operating point."""
    import torch

    from components.audio.features import FeatureConfig
    from components.audio.model import ModelConfig, TriggerWordModel, save_model
    from components.audio.training import ClipDataset, train
    from components.config import load_params
    from components.split import read_split, run as split_run
    from components.tasks.trigger_word.scoring import evaluate

    p = load_params(tiny_params_file).trigger_word

    def build(root: Path) -> None:
        split_run("trigger-word", p, tiny_dataset, root / "split")
        torch.manual_seed(0)
        features = FeatureConfig.from_params(p)
        small = ModelConfig.from_params(p.model, conv_filters=16, gru_hidden=32, gru_layers=1, dropout=0.0)
        net, initial = TriggerWordModel(features, small), TriggerWordModel(features, small)
        initial.load_state_dict(net.state_dict())
        datasets = [ClipDataset(tiny_dataset, read_split(root / "split", name), samples_per_step=net.samples_per_step)
                    for name in ("train", "val")]
        cfg = p.train.model_copy(update={"lr": 5e-3, "batch_size": 16, "max_epochs": 6, "patience": 6, "threads": 1})
        train(net, *datasets, cfg, p.seed, on_epoch=lambda epoch, metrics: None)
        for name, model in (("trained", net), ("untrained", initial)):
            save_model(model, root / f"{name}.pt")
            (root / name).mkdir()
            evaluate(p, tiny_dataset, root / "split", root / f"{name}.pt", root / f"{name}-detector.pt", root / name)

    root = shared_dir(tmp_path_factory, "detectors", build)
    return {name: root / f"{name}-detector.pt" for name in ("trained", "untrained")}


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


# The flow tests' project (tests/test_flow.py, test_flow_pipelines.py, test_team.py): a fresh clone with
# tiny params, per test module.
FLOW_TINY = {**TINY,
             "tune": {"trials": 2, "concurrency": 2, "startup_trials": 2, "train_items": 16, "val_items": 8,
                      "max_epochs": 1, "grace_epochs": 1},
             "train": {"max_epochs": 2, "safety_minutes": 10.0}}
# A face pipeline of seconds: a few rendered people, a small CNN (exportable), one short search.
FACE_TINY = {**CONTRACT_TINY["face"], "model": {"kind": "cnn", "width": 8, "depth": 2, "image_size": 32},
             "tune": {"trials": 2, "concurrency": 2, "startup_trials": 2, "train_items": 40, "val_items": 20,
                      "max_epochs": 1, "grace_epochs": 1, "space": {"kind": ["cnn"], "width": [8], "depth": [2]}},
             "train": {"max_epochs": 2, "identities_per_batch": 4, "images_per_identity": 2},
             "evaluate": {"different_pairs": 1000, "max_same_pairs": 100}}
BIN = Path(sys.executable).parent


def clone_project(dest: Path) -> Path:
    """What a new user gets: `git clone` of the project, with this checkout's uncommitted
    edits to tracked (and new, not ignored) files laid over it, so the test runs the code
    under test. No .venv, caches, registry or DVC outputs come along."""
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(dest)], check=True)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=PROJECT_ROOT,
                           check=True, capture_output=True, text=True).stdout.split("\0")
    files = set(filter(None, files))
    for name in files:
        source = PROJECT_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / name)
    committed = subprocess.run(["git", "ls-files", "-z"], cwd=dest, check=True, capture_output=True,
                               text=True).stdout.split("\0")
    for name in filter(None, committed):  # deleted here, not yet committed
        if name not in files or not (PROJECT_ROOT / name).is_file():
            (dest / name).unlink()
    return dest


@pytest.fixture(scope="module")
def flow_repo(tmp_path_factory):
    """A fresh clone of the project with tiny params and its own DVC remote. Its MLflow
    store is the one `cs230` picks with MLFLOW_TRACKING_URI unset: the clone's mlflow.db."""
    root = clone_project(tmp_path_factory.mktemp("flow") / "repo")
    write_sections(root / "params.yaml", {"trigger_word": FLOW_TINY, "day_night": DAY_NIGHT_TINY, "face": FACE_TINY})
    run = lambda *cmd: subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    run(str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(root.parent / "remote"))
    run("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "tiny params")
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(root),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PREFECT_HOME": str(root / ".prefect")}
    return root, env


@pytest.fixture()
def in_repo(flow_repo, monkeypatch):
    root, env = flow_repo
    monkeypatch.chdir(root)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    return root


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    # its own startup timeout (30 s by default) ran out in a CI-style run on a slow machine
    with prefect_test_harness(server_startup_timeout=int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])):
        yield


def cs230(root, env, *args, **kw):
    return subprocess.run([str(BIN / "cs230"), *args], cwd=root, env={**os.environ, **env}, capture_output=True,
                          text=True, **kw)
