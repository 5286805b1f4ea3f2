"""`cs230 schedule`: serve a pipeline's flow as a Prefect deployment on a schedule.

Schedules need a Prefect server (the ephemeral API lives only as long as one process).
If PREFECT_API_URL is not set, a server is started on loopback for as long as the
schedule is served, and we say so. The flow then runs in this process at each tick.
With a server and a work pool configured (PREFECT_API_URL, PREFECT_DEFAULT_WORK_POOL_NAME,
as `cs230 team up` prints), the deployment goes to that pool instead, with this project
folder as its source, and the command returns: the pool's workers run it.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _free_port(preferred: int = 4200) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def prefect_server() -> Iterator[str]:
    """The configured Prefect API URL, or a loopback server started for the duration."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = open(Path(os.environ.get("PREFECT_HOME", ".prefect")) / "server.log", "a")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    print(f"no Prefect server configured (PREFECT_API_URL); started one on loopback: http://127.0.0.1:{port} "
          f"(UI there; log: {log.name})", flush=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the Prefect server did not start; see {log.name}")
                time.sleep(0.5)
        os.environ["PREFECT_API_URL"] = url
        yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def serve_on_schedule(pipeline: str, cron: str | None, interval_s: float | None, limit_runs: int | None) -> None:
    """Register the deployment `<pipeline>-scheduled` and run its flow at each tick."""
    from prefect.settings import get_current_settings

    pool = get_current_settings().deployments.default_work_pool_name
    if pool and os.environ.get("PREFECT_API_URL"):
        from pipelines.flow import FLOWS

        entrypoint = f"pipelines/flow.py:{FLOWS[pipeline].fn.__name__}"
        deployment_id = FLOWS[pipeline].from_source(source=str(Path.cwd()), entrypoint=entrypoint).deploy(
            name=f"{pipeline}-scheduled", work_pool_name=pool, cron=cron, interval=interval_s,
            concurrency_limit=limit_runs, print_next_steps=False)
        print(f"deployment {pipeline}/{pipeline}-scheduled ({deployment_id}) on work pool {pool}, schedule "
              f"{cron or f'every {interval_s:g} s'}: its workers run it", flush=True)
        return
    with prefect_server():
        from pipelines.flow import FLOWS

        flow = FLOWS[pipeline]
        print(f"serving {pipeline} on schedule {cron or f'every {interval_s:g} s'}; Ctrl-C to stop", flush=True)
        flow.serve(name=f"{pipeline}-scheduled", cron=cron, interval=interval_s, limit=limit_runs,
                   print_starting_message=False)
