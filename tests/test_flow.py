"""The whole trigger-word flow on a tiny configuration, with real services: Prefect's test
harness, local Ray, an sqlite MLflow store, DVC with a local remote. Also: cached re-runs,
a param change, a killed run that resumes, a teammate's clone, a scheduled run. (The other
pipelines' flows: test_flow_pipelines.py, so that the two files run on two workers.)"""
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request

import mlflow
import pytest

from conftest import BIN, cs230, running_mlflow_server
from pipelines.stages import pipeline_stages

pytestmark = pytest.mark.timeout(900)


def new_user_env(env: dict) -> dict:
    """The environment of a user who configured nothing: no tracking URI, no Prefect home."""
    return {k: v for k, v in {**os.environ, **env}.items()
            if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "PREFECT_HOME", "PREFECT_API_URL")}


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
