"""One `cs230 run` at a time per workspace, and nothing left behind when a run dies.

A run changes shared state: params.yaml carries its `--set` overrides (DVC decides what is
stale from that file), a `dvc repro` child holds DVC's lock, and MLflow shows its parent
run as RUNNING. A run that ends normally, or by Ctrl-C or SIGTERM, undoes all three on its
way out. A SIGKILL gives it no way out, so each run also leaves:

- a state file, `.cache/cs230-run/run.json`: its pid, the process group of the stage now
  running, and the text of params.yaml before and after the overrides (written before the
  file is touched, so a kill at any point leaves enough to undo it);
- a watchdog, a detached process (its own session, so a kill of the run's process group
  spares it) that waits for the run's pid to exit and then does what the run could not:
  kills the stage's process group and the ephemeral Prefect API server the run started,
  restores params.yaml if it still holds the overridden text, and marks the MLflow parent
  run KILLED.

If the watchdog died too (a reboot), the next run finds the stale state file and does the
same before it starts. A workspace lock (flock on `.cache/cs230-run/lock`, released by the
kernel when its holder dies) makes a second concurrent run refuse with the holder's pid. A
flow run that no `cs230 run` started (a scheduled one) takes the same guard itself.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

STATE_DIR = Path(".cache/cs230-run")
LOCK_FILE = STATE_DIR / "lock"
STATE_FILE = STATE_DIR / "run.json"
LOCK_WAIT_S = 5.0     # a dead run's watchdog holds the lock for the seconds it takes to clean up
STAGE_GRACE_S = 3.0   # SIGTERM, then SIGKILL: DVC and the stage get this long to exit cleanly


class WorkspaceBusy(Exception):
    """Another run holds this workspace; one-line message naming its pid."""


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename: a kill leaves the old or the new text, never half."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    if path.exists():
        os.chmod(partial, path.stat().st_mode)
    os.replace(partial, path)


def read_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def update_state(**changes) -> None:
    """Record facts about the running run; a no-op outside a guarded run (e.g. a scheduled flow)."""
    state = read_state()
    if state is not None and state.get("pid") == os.getpid():
        atomic_write(STATE_FILE, json.dumps({**state, **changes}))


def _lock(fd: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


@contextmanager
def workspace_lock(wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children (PEP 446)
    try:
        if not _lock(fd, wait_s):
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise WorkspaceBusy(f"another `cs230 run` (pid {holder}) is running in this workspace "
                                f"({Path.cwd()}); wait for it to finish or stop it, then run again")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def kill_stage_group(pgid: int | None) -> None:
    """SIGTERM the stage's process group (`dvc repro` and the stage it runs), then SIGKILL."""
    if not pgid:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STAGE_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def restore_params(state: dict) -> None:
    """Put the user's params.yaml back if it still holds this run's overrides."""
    journal = state.get("params")
    if not journal:
        return
    path = Path(journal["path"])
    now = path.read_text() if path.is_file() else None
    if now == journal["written"]:
        atomic_write(path, journal["original"])
    elif now != journal["original"]:
        print(f"warning: {path} was edited during the run; left as it is now "
              f"(overrides were {journal['overrides']})", file=sys.stderr)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


EPHEMERAL_SERVER = "prefect.server.api.server:create_app"  # in the command line of Prefect's ephemeral API


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): with the pid, names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def note_prefect_server() -> None:
    """Record the ephemeral Prefect API server this process started, if it started one
    (with PREFECT_API_URL it did not), so that the watchdog can stop it: a SIGKILL of the
    run leaves it running, re-parented to init, otherwise."""
    children = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            children += (task / "children").read_text().split()
        except OSError:
            pass
    for pid in map(int, children):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if EPHEMERAL_SERVER.encode() in command:
            update_state(prefect_server=[pid, _start_time(pid)])
            return


def stop_prefect_server(recorded: list | None) -> None:
    if recorded and _start_time(recorded[0]) == recorded[1]:  # still that process, not a reused pid
        try:
            os.kill(recorded[0], signal.SIGTERM)
        except ProcessLookupError:
            pass


def undo(state: dict, dead: bool) -> None:
    """Everything a run left, in the order that frees the workspace first. A dead run's
    ephemeral Prefect server goes too (a live run's stops when the run exits). A process
    recorded before a reboot is someone else's now: it is left alone."""
    if state.get("boot") == boot_id():
        kill_stage_group(state.get("stage_group"))
        if dead:
            stop_prefect_server(state.get("prefect_server"))
    restore_params(state)
    STATE_FILE.unlink(missing_ok=True)


def mark_runs_killed(pid: int) -> None:
    from pipelines.lineage import mark_killed

    try:
        mark_killed(pid)
    except Exception as exc:  # the store may be unreachable now: say so, and go on
        print(f"warning: could not mark the MLflow run of pid {pid} KILLED: {exc}", file=sys.stderr)


@contextmanager
def guarded_run() -> Iterator[None]:
    """The lock, recovery from a dead run, a watchdog, and a clean state on the way out."""
    with workspace_lock():
        stale = read_state()
        if stale is not None:  # we hold the lock, so its run is dead (and its watchdog died or gave up)
            undo(stale, dead=True)
            mark_runs_killed(stale["pid"])
        atomic_write(STATE_FILE, json.dumps({"pid": os.getpid(), "boot": boot_id()}))
        watchdog = subprocess.Popen([sys.executable, "-m", "pipelines.runguard", str(os.getpid())],
                                    start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        update_state(watchdog=watchdog.pid)
        try:
            yield
        finally:
            state = read_state()
            if state is not None:
                undo(state, dead=False)


@contextmanager
def this_run_holds_the_workspace() -> Iterator[None]:
    """For a flow run: `cs230 run` took the guard before its overrides, so go on; a flow run
    started otherwise (a scheduled one) takes it here, so it never overlaps a `cs230 run`."""
    state = read_state()
    if state is not None and state.get("pid") == os.getpid():
        yield
    else:
        with guarded_run():
            yield


def _wait_for_exit(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)  # wakes on exit, immune to pid reuse (Linux >= 5.3)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd here: poll
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def watch(pid: int) -> None:
    """The watchdog: once `pid` exits, undo what it left (nothing, when it ended cleanly)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the run; its exit wakes us
    _wait_for_exit(pid)
    try:
        with workspace_lock(wait_s=60.0):
            state = read_state()
            if state is None or state.get("pid") != pid:
                return
            undo(state, dead=True)
    except WorkspaceBusy:  # a new run took the workspace first; it undoes what is left
        return
    mark_runs_killed(pid)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
