"""MLflow at the edge of a stage: log into the pipeline's run when there is one.

The flow starts one parent run and hands its id to stage processes through the standard
MLFLOW_RUN_ID / MLFLOW_TRACKING_URI variables. Stages log through a client against that
id, never starting or ending the run (ending it would mark the pipeline finished). A stage
run by hand, or by `dvc repro` alone, has no run and logs nothing, without importing MLflow.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


def pipeline_run_id() -> str | None:
    return os.environ.get("MLFLOW_RUN_ID") or None


def _client():
    import mlflow

    return mlflow.MlflowClient()


def log_artifacts(paths: list[Path], artifact_dir: str) -> None:
    """Log files (or whole folders) to the pipeline run, if any."""
    run_id = pipeline_run_id()
    if run_id is None:
        return
    client = _client()
    for path in paths:
        if Path(path).is_dir():
            client.log_artifacts(run_id, str(path), f"{artifact_dir}/{Path(path).name}")
        else:
            client.log_artifact(run_id, str(path), artifact_dir)


def log_metrics(metrics: dict[str, float], step: int = 0) -> None:
    run_id = pipeline_run_id()
    if run_id is None:
        return
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    _client().log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def experiment_id(name: str) -> str:
    """The experiment's id, created on first use. With the embedded sqlite store its
    artifacts go to mlartifacts/ beside mlflow.db (a server decides that for itself)."""
    import mlflow

    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    uri = mlflow.get_tracking_uri()
    store = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" if uri.startswith("sqlite:///") else None
    return client.create_experiment(name, artifact_location=store.resolve().as_uri() if store else None)
