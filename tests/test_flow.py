"""The whole trigger-word flow on a tiny configuration, with real services: Prefect's test
harness, local Ray, an sqlite MLflow store, DVC with a local remote. Also: cached re-runs,
a param change, a killed run that resumes, a teammate's clone, a scheduled run."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from conftest import CONTRACT_TINY, DAY_NIGHT_TINY, PROJECT_ROOT, TINY, running_mlflow_server, write_sections
from pipelines.stages import pipeline_stages

pytestmark = pytest.mark.timeout(900)

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


def new_user_env(env: dict) -> dict:
    """The environment of a user who configured nothing: no tracking URI, no Prefect home."""
    return {k: v for k, v in {**os.environ, **env}.items()
            if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "PREFECT_HOME", "PREFECT_API_URL")}


@pytest.fixture()
def in_repo(flow_repo, monkeypatch):
    root, env = flow_repo
    monkeypatch.chdir(root)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    return root


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


def cs230(root, env, *args, **kw):
    return subprocess.run([str(BIN / "cs230"), *args], cwd=root, env={**os.environ, **env}, capture_output=True,
                          text=True, **kw)


def test_fresh_clone_ends_with_a_champion_that_detects(flow_repo):
    """What a new user does: clone, `cs230 run trigger-word` with nothing configured, then
    `cs230 detect` with no flags. Every stage runs, version 1 is champion in the clone's own
    mlflow.db, and detect prints the champion's detections."""
    root, env = flow_repo
    assert not (root / "mlflow.db").exists()
    done = subprocess.run([str(BIN / "cs230"), "run", "trigger-word"], cwd=root, env=new_user_env(env),
                          capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout[done.stdout.index("stage "):]
    stages = re.findall(r"^(\w+)\s+(ran|cached)\s", table, re.M)
    assert [name for name, _ in stages] == [s.short for s in pipeline_stages("trigger-word")]
    assert {status for _, status in stages} == {"ran"}
    assert "registry: trigger-word-activate version 1: champion" in done.stdout
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("trigger-word-activate", "champion")
    assert int(champion.version) == 1 and len(champion.tags["cs230.identity"]) == 32
    run = client.get_run(champion.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["trigger_word"] == "activate" and len(run.data.tags["git.commit"]) == 40
    assert any(k.startswith("data.data/trigger_word/generated") for k in run.data.tags)
    assert "params.hash" in run.data.tags and "frr_test" in run.data.metrics
    trials = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(trials) == 2 and all("val_loss" in t.data.metrics for t in trials)
    remote_files = [p for p in (root.parent / "remote").rglob("*") if p.is_file()]
    assert len(remote_files) > 100   # pushed: clips, models, reports

    clip = "data/trigger_word/generated/clips/main-00000.wav"
    detected = subprocess.run([str(BIN / "cs230"), "detect", clip], cwd=root, env=new_user_env(env),
                              capture_output=True, text=True)
    assert detected.returncode == 0, detected.stderr
    record = json.loads(detected.stdout)
    assert record["file"] == clip and record["duration_s"] == 10.0 and isinstance(record["detections"], list)
    low = subprocess.run([str(BIN / "cs230"), "detect", clip, "--threshold", "0.0"], cwd=root,
                         env=new_user_env(env), capture_output=True, text=True)
    assert json.loads(low.stdout)["detections"], "at threshold 0 the champion must fire"


def test_rerun_registers_nothing_new(harness, in_repo):
    """Nothing changed: every stage is cached but register, which finds the model in the
    registry and registers nothing; `dvc repro -f` of register does not duplicate it either."""
    from pipelines.flow import trigger_word_flow

    started = time.perf_counter()
    result = trigger_word_flow(push=False)
    assert time.perf_counter() - started < 60
    assert {o.status for o in result.outcomes if o.stage != "register"} == {"cached"}
    decision = json.loads((in_repo / "reports/trigger_word/register/decision.json").read_text())
    assert decision["registered"] is False and decision["version"] == 1 and decision["run_id"] == result.mlflow_run_id
    forced = subprocess.run([str(BIN / "dvc"), "repro", "-f", "--single-item", "trigger_word-register"],
                            cwd=in_repo, capture_output=True, text=True)
    assert forced.returncode == 0, forced.stderr
    versions = mlflow.MlflowClient().search_model_versions("name = 'trigger-word-activate'")
    assert len(versions) == 1


def test_param_change_reruns_only_dependants(harness, in_repo):
    from pipelines.flow import trigger_word_flow

    params = (in_repo / "params.yaml").read_text()
    (in_repo / "params.yaml").write_text(params.replace("smoothing_steps: 5", "smoothing_steps: 3"))
    try:
        result = trigger_word_flow(push=False)
    finally:
        (in_repo / "params.yaml").write_text(params)
    ran = [o.stage for o in result.outcomes if o.status == "ran"]
    assert ran == ["evaluate", "register"]


def test_day_night_flow_registers_and_classifies(harness, in_repo):
    """The second pipeline on the same stages: every stage runs, `day-night` version 1 is
    champion, and `cs230 classify` scores images with it (a bad file gets its own line)."""
    import numpy as np
    from PIL import Image

    from pipelines.flow import day_night_flow

    result = day_night_flow(push=True)  # a teammate's clone (below) pulls every stage
    assert [o.stage for o in result.outcomes] == [s.short for s in pipeline_stages("day-night")]
    assert {o.status for o in result.outcomes} == {"ran"}
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("day-night", "champion")
    assert int(version.version) == 1 and float(version.tags["gate.roc_auc"]) >= 0
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["pipeline"] == "day-night" and "accuracy_test" in run.data.metrics
    assert len(client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")) == 2

    images = np.load(in_repo / "data/day_night/generated/images.npy")
    Image.fromarray(images[0]).resize((200, 150)).save(in_repo.parent / "photo.png")
    (in_repo.parent / "broken.jpg").write_bytes(b"not an image")
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "PREFECT_HOME")}
    proc = cs230(in_repo, env, "classify", "../photo.png", "../broken.jpg")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1, proc.stderr
    assert lines[0]["file"] == "../photo.png" and 0 <= lines[0]["p_night"] <= 1
    assert lines[0]["label"] == ("night" if lines[0]["p_night"] >= 0.5 else "day")
    assert lines[1]["file"] == "../broken.jpg" and "error" in lines[1]


def test_killed_run_resumes_from_cache(flow_repo):
    """Kill `cs230 run` in the middle of the train stage: earlier stages stay cached and
    intact, and the next run starts at train."""
    root, env = flow_repo
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("safety_minutes: 10.0", "safety_minutes: 15.0"))
    manifest = (root / "data/trigger_word/generated/manifest.csv").read_bytes()
    proc = subprocess.Popen([str(BIN / "cs230"), "run", "trigger-word", "--no-push"], cwd=root,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    for line in proc.stdout:
        if "Running stage 'trigger_word-train'" in line:
            time.sleep(2)
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert (root / "data/trigger_word/generated/manifest.csv").read_bytes() == manifest
    again = cs230(root, env, "run", "trigger-word", "--no-push", timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    table = again.stdout[again.stdout.index("stage "):]
    assert re.search(r"^split\s+cached", table, re.M) and re.search(r"^train\s+ran", table, re.M)
    assert "MLflow run" in again.stdout and "registry: trigger-word-activate" in again.stdout


def test_failed_stage_is_named_in_one_line(flow_repo):
    root, env = flow_repo
    backgrounds = root / "data/raw/backgrounds"
    backgrounds.mkdir(parents=True, exist_ok=True)
    (backgrounds / "broken.wav").write_bytes(b"RIFF not really audio")
    try:
        result = cs230(root, env, "run", "trigger-word", "--no-push", timeout=600)
    finally:
        shutil.rmtree(backgrounds)
    assert result.returncode == 1
    error = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(error) == 1 and "stage validate_raw failed" in error[0] and "broken.wav" in error[0]
    assert "Traceback" not in result.stderr


def test_teammate_clone_pulls_same_data_and_gets_a_champion(flow_repo, tmp_path):
    """A teammate clones, `dvc pull --allow-missing`s (only trigger-word has run) and points
    MLFLOW_TRACKING_URI at an empty server: the data are the same, every stage is cached but register, which registers the pulled
    model there as champion, and `cs230 detect` with no flags gives the same detections."""
    root, env = flow_repo
    done = cs230(root, env, "run", "trigger-word", timeout=600)   # a consistent, pushed state
    assert done.returncode == 0, done.stderr[-2000:]
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "run"], cwd=root, check=True)
    clone = tmp_path / "teammate"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    subprocess.run([str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(root.parent / "remote")],
                   cwd=clone, check=True)
    pulled = subprocess.run([str(BIN / "dvc"), "pull", "--allow-missing"], cwd=clone, capture_output=True, text=True,
                            env={**os.environ, **env})
    assert pulled.returncode == 0, pulled.stderr
    assert (clone / "data/trigger_word/generated/manifest.csv").read_bytes() == \
        (root / "data/trigger_word/generated/manifest.csv").read_bytes()
    clip = "data/trigger_word/generated/clips/main-00000.wav"
    ours = cs230(root, env, "detect", clip, "--model", "models/trigger_word/detector.pt")  # what was pushed
    with running_mlflow_server(tmp_path / "server") as url:
        theirs_env = {**env, "PYTHONPATH": str(clone), "MLFLOW_TRACKING_URI": url,
                      "PREFECT_HOME": str(clone / ".prefect")}
        run = cs230(clone, theirs_env, "run", "trigger-word", "--no-push", timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        table = run.stdout[run.stdout.index("stage "):]
        assert re.findall(r"^(\w+)\s+ran\s", table, re.M) == ["register"]
        assert "registry: trigger-word-activate version 1: champion" in run.stdout
        theirs = cs230(clone, theirs_env, "detect", clip)
    assert ours.returncode == theirs.returncode == 0, theirs.stderr
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)


def test_schedule_creates_and_executes_a_run(flow_repo):
    """`cs230 schedule` with no Prefect server configured starts one on loopback, and a
    scheduled run of the (cached) pipeline completes."""
    root, env = flow_repo
    run_env = {k: v for k, v in {**os.environ, **env}.items() if k != "PREFECT_API_URL"}
    proc = subprocess.Popen([str(BIN / "cs230"), "schedule", "trigger-word", "--interval", "5"], cwd=root,
                            env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        url = None
        for line in proc.stdout:
            found = re.search(r"started one on loopback: (http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the schedule command did not say it started a Prefect server"
        deadline = time.time() + 300
        states = []
        while time.time() < deadline:
            request = urllib.request.Request(f"{url}/api/flow_runs/filter", data=b"{}", method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                runs = json.loads(urllib.request.urlopen(request, timeout=5).read())
            except OSError:
                runs = []
            states = [r["state_type"] for r in runs]
            if "COMPLETED" in states:
                break
            time.sleep(2)
        assert "COMPLETED" in states, states
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_face_flow_registers_and_every_face_command_works(harness, in_repo):
    """The third pipeline: `face-encoder` version 1 is champion, then `cs230 face` embed, verify,
    enroll, identify and cluster work with it on rendered faces (--cropped: they are chips) and on
    a real photo (detected and aligned); a bad image gets its own line."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from pipelines.cli import ensure_raw_inputs
    from pipelines.flow import FLOWS

    ensure_raw_inputs()  # as `cs230 run` does first: this file may run alone, before any test made data/raw
    result = FLOWS["face"](push=False)
    assert [o.stage for o in result.outcomes] == [s.short for s in pipeline_stages("face")]
    version = mlflow.MlflowClient().get_model_version_by_alias("face-encoder", "champion")
    assert int(version.version) == 1

    work = in_repo / "photos"  # cs230 runs inside a project; relative paths are the caller's
    images = np.load(in_repo / "data/face/generated/images.npy")
    manifest = pd.read_csv(in_repo / "data/face/generated/manifest.csv", dtype={"identity": str})
    people = manifest.groupby("identity").image_id.apply(list).iloc[:3]
    for person, ids in people.items():  # first image enrolled, second a query
        for kind, i in (("gallery", ids[0]), ("queries", ids[1])):
            (work / kind / person).mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(work / kind / person / f"{i}.png")
    yale = PROJECT_ROOT.parent / "shared/data/faces/yale"
    (work / "real").mkdir()
    (work / "real" / "photo.png").write_bytes((yale / "subject01" / "normal.png").read_bytes())
    (work / "broken.jpg").write_bytes(b"not an image")
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "PREFECT_HOME")}

    def face(*args) -> tuple[int, list[dict]]:
        proc = cs230(work, env, "face", *args)
        assert proc.returncode in (0, 1), proc.stderr
        return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]

    status, records = face("embed", "real/photo.png", "broken.jpg")
    assert status == 1 and len(records[0]["faces"]) == 1 and len(records[0]["faces"][0]["embedding"]) == 128
    assert records[1]["file"] == "broken.jpg" and "error" in records[1]
    first, second = (next((work / "queries" / p).iterdir()) for p in people.index[:2])
    status, (record,) = face("verify", str(first), str(second), "--cropped")
    assert status == 0 and set(record) == {"a", "b", "distance", "p_same", "same"} and 0 <= record["p_same"] <= 1
    assert face("enroll", "gallery", "--index", "index", "--cropped")[0] == 0
    status, records = face("identify", "--index", "index", "queries", "--cropped")
    assert status == 0 and len(records) == 3
    assert all(r["identity"] in set(people.index) | {"unknown"} and r["distance"] >= 0 for r in records)
    status, records = face("cluster", "queries", "--cropped")
    assert status == 0 and all(isinstance(r["cluster"], int) for r in records)
