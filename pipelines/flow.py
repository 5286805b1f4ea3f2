"""Prefect flow: run a pipeline's DVC stages in order, one Prefect task per stage.

Each task is `dvc repro --single-item <stage>`: DVC decides from content hashes whether
the stage must run or is cached, records the result in dvc.lock, and keeps completed
stages cached when a later one fails, so the next run resumes where this one stopped.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass

from prefect import flow, get_run_logger, task

from components.config import load_params
from pipelines import runguard
from pipelines.lineage import parent_run
from pipelines.stages import PIPELINES, Stage, key_figures, pipeline_stages

USER_ERROR_EXIT = 2  # a stage's exit code for bad input or failed validation
# DVC chatter that says nothing to a pipeline user (data/raw is empty until they add files;
# the flow pushes by itself)
DVC_NOISE = ("WARNING: 'data/raw' is empty.", "Use `dvc push` to send your updates")
# The only failures worth a retry: another process holds a lock (DVC's repo lock or a busy
# output), or a server did not answer. Anything else (a traceback, a killed process, out of
# memory, bad input) fails the same way again, so it is reported once.
TRANSIENT = ("Unable to acquire lock", "is busy, it is being blocked by", "Connection refused",
             "Connection reset", "Connection aborted", "ConnectTimeout", "ReadTimeout", "timed out",
             "Max retries exceeded", "Temporary failure in name resolution", "503 Service Unavailable",
             "502 Bad Gateway", "504 Gateway Timeout")
# The process died or ran out of memory: never transient, whatever else it printed.
FATAL = ("exited with -", "exited with 137", "MemoryError", "Killed", "out of memory")
TAIL_LINES = 40  # enough to hold a traceback's last frames and DVC's error line


class StageFailed(RuntimeError):
    def __init__(self, stage: str, exit_code: int, reason: str, transient: bool = False):
        super().__init__(f"stage {stage} failed (exit {exit_code}): {reason}")
        self.stage, self.exit_code, self.reason, self.transient = stage, exit_code, reason, transient


@dataclass
class StageOutcome:
    stage: str
    status: str      # "ran" or "cached"
    seconds: float
    figures: str


def is_transient(tail: list[str]) -> bool:
    text = "\n".join(tail)
    return any(t in text for t in TRANSIENT) and not any(k in text for k in FATAL)


def failure(stage: str, code: int, tail: list[str]) -> StageFailed:
    """The one-line reason: the stage's own `error:` line, else its exception, else DVC's last word."""
    errors = [ln.removeprefix("error: ") for ln in tail if ln.startswith("error: ")]
    exceptions = [ln for ln in tail if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b", ln)]
    killed = [f"killed by a signal (out of memory?): {ln}" for ln in tail if "exited with -" in ln]
    reason = (errors or exceptions or killed or tail or ["no output"])[-1]
    # the stage's own exit code is not visible through dvc; its one-line error is
    return StageFailed(stage, USER_ERROR_EXIT if errors else code, reason, is_transient(tail))


def _retry_if_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except StageFailed as exc:
        return exc.transient
    except Exception:
        return False
    return False


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=_retry_if_transient, cache_policy=None)
def run_stage(stage: Stage) -> StageOutcome:
    """`dvc repro` one stage, streaming its output, and report whether it ran.

    DVC and the stage run in their own process group, recorded in the run's state file:
    whoever ends the run (Ctrl-C here, the watchdog after a SIGKILL) ends the whole group,
    so no orphaned `dvc repro` keeps the DVC lock or goes on writing outputs."""
    started = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro", "--single-item", stage.name], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1, process_group=0)
    runguard.update_state(stage_group=proc.pid)
    ran, tail = False, []
    try:
        for line in proc.stdout:
            if not line.startswith(DVC_NOISE):
                sys.stdout.write(line)
            ran = ran or line.startswith("Running stage")
            if line.strip():
                tail = (tail + [line.strip()])[-TAIL_LINES:]
        code = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted while the stage runs
            runguard.kill_stage_group(proc.pid)
        runguard.update_state(stage_group=None)
    if code != 0:
        raise failure(stage.short, code, tail)
    return StageOutcome(stage.short, "ran" if ran else "cached", time.perf_counter() - started, key_figures(stage))


@dataclass
class PipelineResult:
    pipeline: str
    mlflow_run_id: str
    outcomes: list[StageOutcome]
    pushed: bool


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_if_transient, cache_policy=None)
def push_outputs(stages: list[Stage]) -> None:
    """`dvc push` the raw inputs (as the run used them) and every stage's outputs."""
    for cmd in (["dvc", "commit", "--force", "--quiet", "data.dvc"],
                ["dvc", "push", "--quiet", "data.dvc", *(s.name for s in stages)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr + proc.stdout).strip().splitlines()[-TAIL_LINES:]
            raise StageFailed(" ".join(cmd[1:2]), proc.returncode, (tail or ["no output"])[-1], is_transient(tail))


def run_pipeline(pipeline: str, push: bool) -> PipelineResult:
    with runguard.this_run_holds_the_workspace():
        runguard.note_prefect_server()
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


@flow(name="face", log_prints=True)
def face_flow(push: bool = True) -> PipelineResult:
    """validate raw -> generate -> validate generated -> split -> gate data -> tune -> train -> evaluate -> register"""
    return run_pipeline("face", push)


@flow(name="style-transfer", log_prints=True)
def style_transfer_flow(push: bool = True) -> PipelineResult:
    """validate raw -> generate -> validate generated -> split -> tune -> train -> evaluate -> register (one style)"""
    return run_pipeline("style-transfer", push)


FLOWS = {"trigger-word": trigger_word_flow, "day-night": day_night_flow, "face": face_flow,
         "style-transfer": style_transfer_flow}
