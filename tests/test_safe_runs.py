"""Runs that cannot hurt the user: a killed `cs230 run` (SIGKILL, SIGTERM) leaves params.yaml
as the user wrote it, no orphaned `dvc repro`, and its MLflow run KILLED; a second run in
the same workspace refuses; only transient stage failures are retried; a stage never
replaces data/raw/. Real processes, real signals, a real DVC project whose stages are small
scripts (so a run is seconds), a real sqlite MLflow store."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest

from conftest import PROJECT_ROOT

pytestmark = pytest.mark.timeout(300)
BIN = Path(sys.executable).parent

# A stage that records the seed it saw in params.yaml and its pid, then waits while `hold` exists.
HOLDING_STAGE = """\
import os, sys, time, yaml
open("seen.txt", "w").write(str(yaml.safe_load(open("params.yaml"))["trigger_word"]["seed"]))
open("stage.pid", "w").write(str(os.getpid()))
while os.path.exists("hold"):
    time.sleep(0.1)
open(sys.argv[1], "w").write("done")
"""
DVC_YAML = """\
stages:
  trigger_word-first:
    cmd: python -c "open('first.txt', 'w').write('1')"
    outs: [first.txt]
  trigger_word-second:
    cmd: python holding_stage.py second.txt
    deps: [first.txt, holding_stage.py]
    params: [trigger_word.seed]
    outs: [second.txt]
"""


def env_for(root: Path) -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(PROJECT_ROOT),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PREFECT_HOME": str(root / ".prefect")}


@pytest.fixture()
def project(tmp_path):
    """A DVC project with the real params.yaml and a two-stage `trigger_word` pipeline."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "params.yaml", root / "params.yaml")
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "holding_stage.py").write_text(HOLDING_STAGE)
    (root / "data" / "raw").mkdir(parents=True)
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=root, check=True, env=env_for(root))
    return root


def start_run(root: Path, *args: str) -> subprocess.Popen:
    (root / "hold").touch()
    proc = subprocess.Popen([str(BIN / "cs230"), "run", "trigger-word", "--no-push", *args], cwd=root,
                            env=env_for(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while not (root / "stage.pid").is_file():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.1)
    return proc


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_for(condition, seconds: float = 30) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def parent_runs(root: Path) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_sigkill_restores_params_kills_dvc_marks_run_and_resumes(project):
    """SIGKILL of `cs230 run --set` mid-stage: the stage saw the override, the watchdog puts
    params.yaml back byte for byte, ends the orphaned dvc repro and the run's ephemeral Prefect
    server, marks the run KILLED; a second run meanwhile refuses naming the pid, and the next
    run resumes from the cache."""
    original = (project / "params.yaml").read_text()
    run = start_run(project, "--set", "trigger_word.seed=7")
    assert (project / "seen.txt").read_text() == "7"          # DVC and the stage see the override
    assert "seed: 7" in (project / "params.yaml").read_text()
    stage_pid = int((project / "stage.pid").read_text())
    server_pid = json.loads((project / ".cache/cs230-run/run.json").read_text())["prefect_server"][0]
    assert b"uvicorn" in Path(f"/proc/{server_pid}/cmdline").read_bytes() and alive(server_pid)

    second = subprocess.run([str(BIN / "cs230"), "run", "trigger-word", "--no-push"], cwd=project,
                            env=env_for(project), capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    assert f"another `cs230 run` (pid {run.pid}) is running in this workspace" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1

    os.kill(run.pid, signal.SIGKILL)                           # the run only: its children are orphans now
    run.wait(timeout=10)
    assert wait_for(lambda: (project / "params.yaml").read_text() == original)
    assert wait_for(lambda: not alive(stage_pid))
    assert wait_for(lambda: not alive(server_pid))
    assert wait_for(lambda: [r.info.status for r in parent_runs(project)] == ["KILLED"])
    assert parent_runs(project)[0].data.tags["cs230.pid"] == str(run.pid)

    (project / "hold").unlink()
    again = subprocess.run([str(BIN / "cs230"), "run", "trigger-word", "--no-push", "--set", "trigger_word.seed=7"],
                           cwd=project, env=env_for(project), capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    table = again.stdout[again.stdout.index("stage "):]
    assert "first   cached" in table and "second  ran" in table
    assert (project / "params.yaml").read_text() == original
    assert sorted(r.info.status for r in parent_runs(project)) == ["FINISHED", "KILLED"]


def test_run_and_watchdog_killed_together_are_undone_by_the_next_run(project):
    original = (project / "params.yaml").read_text()
    run = start_run(project, "--set", "trigger_word.seed=11")
    state = json.loads((project / ".cache/cs230-run/run.json").read_text())
    stage_pid = int((project / "stage.pid").read_text())
    os.kill(state["watchdog"], signal.SIGKILL)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=10)
    time.sleep(1)
    assert "seed: 11" in (project / "params.yaml").read_text() and alive(stage_pid)  # nobody cleaned up yet

    # the next run recovers before it even reads its own (here: bad) overrides
    bad = subprocess.run([str(BIN / "cs230"), "run", "trigger-word", "--no-push", "--set", "trigger_word.nope=1"],
                         cwd=project, env=env_for(project), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr
    assert (project / "params.yaml").read_text() == original
    assert wait_for(lambda: not alive(stage_pid), 5)
    assert wait_for(lambda: not alive(state["prefect_server"][0]), 5)
    assert [r.info.status for r in parent_runs(project)] == ["KILLED"]


def test_a_flow_run_not_started_by_cs230_run_takes_the_workspace_too(project):
    """A scheduled run (the flow started by Prefect, not by `cs230 run`) refuses while a
    `cs230 run` holds the workspace, and leaves that run's stage alone."""
    run = start_run(project)
    stage_pid = int((project / "stage.pid").read_text())
    try:
        scheduled = subprocess.run([sys.executable, "-c", "from pipelines.flow import FLOWS; FLOWS['trigger-word']()"],
                                   cwd=project, env=env_for(project), capture_output=True, text=True, timeout=120)
        assert scheduled.returncode != 0
        assert f"another `cs230 run` (pid {run.pid}) is running in this workspace" in scheduled.stderr
        assert alive(stage_pid) and run.poll() is None
    finally:
        (project / "hold").unlink()
    assert run.wait(timeout=120) == 0, run.stdout.read()[-2000:]


def test_sigterm_ends_the_run_cleanly(project):
    original = (project / "params.yaml").read_text()
    run = start_run(project, "--set", "trigger_word.seed=5")
    stage_pid = int((project / "stage.pid").read_text())
    os.kill(run.pid, signal.SIGTERM)
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 130, out[-2000:]
    assert "Traceback" not in out
    assert (project / "params.yaml").read_text() == original   # restored by the run itself
    assert not alive(stage_pid)
    assert [r.info.status for r in parent_runs(project)] == ["KILLED"]
    assert not (project / ".cache/cs230-run/run.json").exists()


# --- retries ---------------------------------------------------------------------------

COUNTED_STAGE = """\
import os, signal, sys, urllib.request
kind = sys.argv[1]
with open(f"{kind}.count", "a") as f:
    f.write("x")
attempt = len(open(f"{kind}.count").read())
if kind == "server" and attempt == 1:
    urllib.request.urlopen("http://127.0.0.1:9/", timeout=5)   # nothing listens on port 9
if kind == "traceback":
    raise ValueError("a bug in the stage")
if kind == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
if kind == "oom":
    raise MemoryError()
open(f"{kind}.out", "w").write(str(attempt))
"""


@pytest.fixture()
def counted_project(tmp_path, monkeypatch):
    kinds = ("server", "lock", "traceback", "killed", "oom")
    stages = {f"t-{k}": {"cmd": f"python counted_stage.py {k}", "outs": [f"{k}.out"]} for k in kinds}
    (tmp_path / "dvc.yaml").write_text(json.dumps({"stages": stages}))
    (tmp_path / "counted_stage.py").write_text(COUNTED_STAGE)
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def attempts(root: Path, kind: str) -> int:
    return len((root / f"{kind}.count").read_text())


def test_server_that_did_not_answer_is_retried(harness, counted_project):
    from pipelines.flow import run_stage
    from pipelines.stages import Stage

    outcome = run_stage(Stage("t-server", "server", ()))
    assert outcome.status == "ran" and attempts(counted_project, "server") == 2


def test_lock_held_by_another_process_is_retried(harness, counted_project):
    from pipelines.flow import run_stage
    from pipelines.stages import Stage

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""\
        import sys, time, zc.lockfile
        lock = zc.lockfile.LockFile(".dvc/tmp/lock")
        print("held", flush=True)
        time.sleep(5)
        lock.close()""")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.perf_counter()
    outcome = run_stage(Stage("t-lock", "lock", ()))
    holder.wait(timeout=10)
    assert outcome.status == "ran" and attempts(counted_project, "lock") == 1   # DVC never started it while locked
    assert time.perf_counter() - started >= 3                                   # it waited for the lock


@pytest.mark.parametrize("kind, reason", [("traceback", "ValueError: a bug in the stage"),
                                          ("killed", "killed"), ("oom", "MemoryError")])
def test_real_failures_are_reported_once_naming_the_stage(harness, counted_project, kind, reason):
    from pipelines.flow import StageFailed, run_stage
    from pipelines.stages import Stage

    with pytest.raises(StageFailed) as failed:
        run_stage(Stage(f"t-{kind}", kind, ()))
    assert attempts(counted_project, kind) == 1
    assert str(failed.value).startswith(f"stage {kind} failed") and reason in str(failed.value)
    assert not failed.value.transient


# --- output folders --------------------------------------------------------------------

def test_stage_refuses_to_replace_raw_data(project):
    kept = project / "data/raw/backgrounds/rain.wav"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"the user's recording")
    proc = subprocess.run([sys.executable, "-m", "components.validate", "trigger-word", "raw", "--report", "data/raw"],
                          cwd=project, env=env_for(project), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "data/raw" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert kept.read_bytes() == b"the user's recording" and sorted(os.listdir(project / "data/raw")) == ["backgrounds"]


def test_only_stage_output_folders_are_replaced(project, monkeypatch, tmp_path_factory):
    from components.stage_cli import StageError, staged_output

    monkeypatch.chdir(project)
    for folder in (Path("data/raw"), Path("data/raw/backgrounds"), Path("data"), Path("."), Path("holding_stage.py"),
                   Path("data/trigger_word"), Path(".dvc")):
        if folder == Path("data/trigger_word"):
            (project / folder / "generated").mkdir(parents=True)
        with pytest.raises(StageError):
            with staged_output(folder):
                pass
    assert (project / "holding_stage.py").is_file() and (project / "data/raw").is_dir()
    for folder in (Path("data/trigger_word/generated"), Path("reports/trigger_word/x"), tmp_path_factory.mktemp("o")):
        (project / folder).mkdir(parents=True, exist_ok=True)
        (project / folder / "old").write_text("previous output")
        with staged_output(folder) as out:
            (out / "new").write_text("output")
        assert sorted(os.listdir(project / folder)) == ["new"]
