"""The pipeline's MLflow parent run and the lineage tags that tie it to code and data.

Tags: the git commit (and whether the tree was dirty), the dvc.lock hashes of the
generated data and the split, a hash of the pipeline's params section, and the trigger
word. Stage processes log into the run through MLFLOW_RUN_ID (components/tracking.py).

A run ends FINISHED, FAILED, or KILLED when interrupted (Ctrl-C, SIGTERM). A SIGKILL ends
nothing, so the run also records the pid and host of its `cs230 run`: the watchdog (or the
next run) marks the RUNNING runs of that dead pid KILLED (pipelines/runguard.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

from components import tracking
from components.config import Params

LOCK_FILE = Path("dvc.lock")


def git_commit() -> tuple[str, bool]:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    return git("rev-parse", "HEAD") or "unknown", bool(git("status", "--porcelain", "--untracked-files=no"))


def data_hashes(section: str, lock_file: Path = LOCK_FILE) -> dict[str, str]:
    """md5 of each directory output of the pipeline's stages, from dvc.lock."""
    if not lock_file.is_file():
        return {}
    stages = yaml.safe_load(lock_file.read_text()).get("stages", {})
    hashes = {}
    for name, body in stages.items():
        if name.startswith(section + "-"):
            for out in body.get("outs", []):
                if out.get("md5", "").endswith(".dir"):
                    hashes[f"data.{out['path']}"] = out["md5"]
    return hashes


def params_hash(params: Params, section: str) -> str:
    body = json.dumps(getattr(params, section).model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, list) else value
    return out


@contextmanager
def parent_run(pipeline: str, section: str, params: Params) -> Iterator[str]:
    """Start the pipeline's MLflow run and expose it to stage processes; yields its id.
    The data tags are set at the end, from the dvc.lock the run produced."""
    import mlflow

    commit, dirty = git_commit()
    tags = {"pipeline": pipeline, "git.commit": commit, "git.dirty": str(dirty),
            "params.hash": params_hash(params, section), "cs230.pid": str(os.getpid()),
            "cs230.host": socket.gethostname()}
    if section == "trigger_word":
        tags["trigger_word"] = params.trigger_word.word
    run = mlflow.start_run(experiment_id=tracking.experiment_id(pipeline), tags=tags)
    status = "FINISHED"
    try:
        mlflow.log_params(_flatten("", getattr(params, section).model_dump(mode="json"), {}))
        os.environ["MLFLOW_RUN_ID"] = run.info.run_id
        yield run.info.run_id
    except Exception:
        status = "FAILED"
        raise
    except BaseException:  # Ctrl-C, SIGTERM (Prefect's TerminationSignal), SystemExit: interrupted
        status = "KILLED"
        raise
    finally:
        os.environ.pop("MLFLOW_RUN_ID", None)
        mlflow.set_tags(data_hashes(section))
        mlflow.end_run(status)


def mark_killed(pid: int) -> list[str]:
    """Mark KILLED the RUNNING runs (pipeline runs and their trials) of a `cs230 run` on this
    host whose process `pid` is gone; returns their ids."""
    import mlflow

    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    running = "attributes.status = 'RUNNING'"
    parents = client.search_runs(experiments, f"{running} and tags.`cs230.pid` = '{pid}' "
                                              f"and tags.`cs230.host` = '{socket.gethostname()}'")
    killed = []
    for parent in parents:
        trials = client.search_runs([parent.info.experiment_id],
                                    f"{running} and tags.mlflow.parentRunId = '{parent.info.run_id}'")
        for run in (*trials, parent):
            client.set_terminated(run.info.run_id, "KILLED")
            killed.append(run.info.run_id)
    return killed
