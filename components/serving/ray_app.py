"""`cs230 serve --ray`: the same FastAPI app as a Ray Serve deployment with N replicas.

Each replica runs `create_app(config)` whole: its lifespan loads the models, sets one torch
thread and polls the registry, so every replica follows the champion by itself (within
poll_seconds). POST /v1/admin/reload reaches the one replica that takes the request; the
others catch up at their next poll.
"""
from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

from components.serve import ServeConfig, create_app


def application(config: ServeConfig, replicas: int, replica_cpus: float):
    from ray import serve

    @serve.deployment(name="cs230", num_replicas=replicas, ray_actor_options={"num_cpus": replica_cpus})
    @serve.ingress(create_app(config))
    class Cs230Server:
        """The app of components/serve.py; nothing to add per replica."""

    return Cs230Server.bind()


def run(config: ServeConfig, host: str, port: int, replicas: int, replica_cpus: float,
        ray_address: str | None = None) -> None:
    """Deploy on RAY_ADDRESS's cluster or a local Ray, then wait until Ctrl-C and shut down."""
    import ray
    from ray import serve

    import components

    if ray_address:  # the cluster's workers need this package's code
        ray.init(address=ray_address, logging_level=logging.WARNING,
                 runtime_env={"py_modules": [str(Path(components.__file__).parent)]})
    else:
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    def stop(signum, frame):  # SIGTERM (a container's stop) shuts down as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(application(config, replicas, replica_cpus), name="cs230", route_prefix="/")
        print(f"Ray Serve: {replicas} replica(s) of cs230 serve on http://{host}:{port} (Ctrl-C to stop)",
              flush=True)
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
        ray.shutdown()
