"""Prefect flow: run a pipeline's DVC stages in order, one Prefect task per stage.

Each task is `dvc repro --single-item <stage>`: DVC decides from content hashes whether
the stage must run or is cached, records the result in dvc.lock, and keeps completed
stages cached when a later one fails, so the next run resumes where this one stopped.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass


from prefect import flow, get_run_logger, task

from components.config import load_params
from pipelines.lineage import parent_run
from pipelines.stages import PIPELINES, Stage, key_figures, pipeline_stages

USER_ERROR_EXIT = 2  # a stage's exit code for bad input or failed validation: no retry
# DVC chatter that says nothing to a pipeline user (data/raw is empty until they add files;
# the flow pushes by itself)
DVC_NOISE = ("WARNING: 'data/raw' is empty.", "Use `dvc push` to send your updates")


class StageFailed(RuntimeError):
    def __init__(self, stage: str, exit_code: int, reason: str):
        super().__init__(f"stage {stage} failed (exit {exit_code}): {reason}")
        self.stage, self.exit_code, self.reason = stage, exit_code, reason


@dataclass
class StageOutcome:
    stage: str
    status: str      # "ran" or "cached"
    seconds: float
    figures: str


def _retry_unless_user_error(task, task_run, state) -> bool:
    try:
        state.result()
    except StageFailed as exc:
        return exc.exit_code != USER_ERROR_EXIT
    except Exception:
        return True
    return False


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=_retry_unless_user_error, cache_policy=None)
def run_stage(stage: Stage) -> StageOutcome:
    """`dvc repro` one stage, streaming its output, and report whether it ran."""
    started = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro", "--single-item", stage.name], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    ran, last_lines = False, []
    for line in proc.stdout:
        if not line.startswith(DVC_NOISE):
            sys.stdout.write(line)
        ran = ran or line.startswith("Running stage")
        if line.strip():
            last_lines = (last_lines + [line.strip()])[-5:]
    code = proc.wait()
    if code != 0:
        errors = [ln.removeprefix("error: ") for ln in last_lines if ln.startswith("error: ")]
        reason = errors[-1] if errors else (last_lines[-1] if last_lines else "no output")
        # the stage's own exit code is not visible through dvc; its one-line error is
        raise StageFailed(stage.short, USER_ERROR_EXIT if errors else code, reason)
    return StageOutcome(stage.short, "ran" if ran else "cached", time.perf_counter() - started, key_figures(stage))


@dataclass
class PipelineResult:
    pipeline: str
    mlflow_run_id: str
    outcomes: list[StageOutcome]
    pushed: bool


@task(retries=2, retry_delay_seconds=5, cache_policy=None)
def push_outputs(stages: list[Stage]) -> None:
    """`dvc push` the raw inputs (as the run used them) and every stage's outputs."""
    for cmd in (["dvc", "commit", "--force", "--quiet", "data.dvc"],
                ["dvc", "push", "--quiet", "data.dvc", *(s.name for s in stages)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {lines[-1]}")


def run_pipeline(pipeline: str, push: bool) -> PipelineResult:
    section = PIPELINES[pipeline]
    params = load_params()
    stages = pipeline_stages(pipeline)
    with parent_run(pipeline, section, params) as run_id:
        outcomes = []
        for stage in stages:
            get_run_logger().info("stage %s", stage.short)
            outcomes.append(run_stage(stage))
        if push:
            push_outputs(stages)
    return PipelineResult(pipeline, run_id, outcomes, push)


@flow(name="trigger-word", log_prints=True)
def trigger_word_flow(push: bool = True) -> PipelineResult:
    """validate raw -> generate -> validate generated -> split -> tune -> train -> evaluate -> register"""
    return run_pipeline("trigger-word", push)


@flow(name="day-night", log_prints=True)
def day_night_flow(push: bool = True) -> PipelineResult:
    """validate raw -> generate -> validate generated -> split -> tune -> train -> evaluate -> register"""
    return run_pipeline("day-night", push)


FLOWS = {"trigger-word": trigger_word_flow, "day-night": day_night_flow}
