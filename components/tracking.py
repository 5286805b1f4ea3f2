"""MLflow at the edge of a stage: log into the pipeline's run when there is one.

The flow starts one parent run and hands its id to stage processes through the standard
MLFLOW_RUN_ID / MLFLOW_TRACKING_URI variables. A stage run by hand (or by `dvc repro`
alone) has no run and logs nothing, without importing MLflow at all.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def pipeline_run() -> Iterator[object | None]:
    """The active pipeline run (an mlflow.ActiveRun), or None when no flow started one."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        yield None
        return
    import mlflow

    with mlflow.start_run(run_id=run_id) as run:
        yield run


def log_artifacts(paths: list[Path], artifact_dir: str) -> None:
    """Log files to the pipeline run, if any."""
    with pipeline_run() as run:
        if run is not None:
            import mlflow

            for path in paths:
                mlflow.log_artifact(str(path), artifact_path=artifact_dir)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    with pipeline_run() as run:
        if run is not None:
            import mlflow

            mlflow.log_metrics(metrics, step=step)
