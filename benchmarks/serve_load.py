"""Load on `cs230 serve`: requests/s and p50/p99 latency at 1, 4 and 16 concurrent clients.

Starts `cs230 serve` (uvicorn) on a free loopback port with the project's champion from
mlflow.db or, when none is registered, a random-weight detector of the params.yaml size
saved to a temporary file (`--model`). Each level sends a fixed number of requests (default
60) of one 10 s, 16 kHz WAV clip from that many async httpx clients, each client sending
its next request when the last one is answered. Then the server is stopped. Loopback only.
With --replicas N the server is `cs230 serve --ray --replicas N` (local Ray) instead.
    python benchmarks/serve_load.py [--requests 60] [--levels 1 4 16] [--replicas N]
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.config import load_params  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def champion_args(tmp: Path) -> tuple[list[str], str]:
    """`--model` for a random detector unless the project's mlflow.db has a champion."""
    from components.registry import registered_name

    params = load_params(ROOT / "params.yaml")
    name, db = registered_name(params.trigger_word.slug), ROOT / "mlflow.db"
    if db.is_file():  # never let MLflow create an empty store here
        import mlflow

        try:
            version = mlflow.MlflowClient(f"sqlite:///{db}").get_model_version_by_alias(name, "champion")
            return [], f"champion models:/{name}/{version.version}"
        except mlflow.exceptions.MlflowException:
            pass
    import torch

    from components.audio.features import FeatureConfig
    from components.audio.model import ModelConfig, TriggerWordModel, save_model

    torch.manual_seed(0)
    tw = params.trigger_word
    model = TriggerWordModel(FeatureConfig.from_params(tw), ModelConfig.from_params(tw.model)).eval()
    save_model(model, tmp / "detector.pt")
    size = sum(p.numel() for p in model.parameters())
    return ["--model", str(tmp / "detector.pt")], f"random-weight detector ({size} parameters; no champion in mlflow.db)"


def clip_wav(seconds: float = 10.0, rate: int = 16000) -> bytes:
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 440 * t) * ((t % 2) < 0.5)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


async def level(url: str, body: bytes, clients: int, n_requests: int) -> dict:
    import httpx

    latencies, errors, todo = [], 0, iter(range(n_requests))

    async def client_loop(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for _ in todo:  # shared iterator: each request is sent once, by whichever client is free
            started = time.perf_counter()
            r = await http.post(url, files={"file": ("clip.wav", body, "audio/wav")})
            latencies.append(time.perf_counter() - started)
            errors += r.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"rps": n_requests / wall, "p50": np.percentile(ms, 50), "p99": np.percentile(ms, 99), "errors": errors}


def wait_until_up(base: str, proc: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    import httpx

    deadline = time.time() + seconds
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the server did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="requests per concurrency level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--replicas", type=int, help="serve with Ray Serve and this many replicas")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        tmp = Path(tmp)
        model_args, what = champion_args(tmp)
        port, log = free_port(), tmp / "server.log"
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{ROOT / 'mlflow.db'}"}
        env.pop("CS230_SERVE_TOKEN", None)
        ray_args = ["--ray", "--replicas", str(args.replicas)] if args.replicas else []
        command = [sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port), *model_args, *ray_args]
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base, proc, log)
            body = clip_wav()
            how = f"Ray Serve, {args.replicas} replicas" if args.replicas else "uvicorn"
            print(f"cs230 serve ({how}) at {base}: {what}; {len(os.sched_getaffinity(0))} cores, load average "
                  f"{os.getloadavg()[0]:.1f}; {args.requests} requests of a 10 s clip per level", flush=True)
            asyncio.run(level(f"{base}/v1/trigger-word/detect", body, 1, 3))  # warm-up
            print(f"{'clients':>7}  {'req/s':>6}  {'p50 ms':>7}  {'p99 ms':>7}  errors")
            for clients in args.levels:
                r = asyncio.run(level(f"{base}/v1/trigger-word/detect", body, clients, args.requests))
                print(f"{clients:>7}  {r['rps']:6.1f}  {r['p50']:7.1f}  {r['p99']:7.1f}  {r['errors']}", flush=True)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
