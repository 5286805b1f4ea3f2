"""`cs230 team up` / `cs230 team down`: the team's services as processes on this machine.

A team shares one tracking server and registry, one data remote, one scheduler and one
cluster. These are the same engines a team deploys (infra/ has the container and
Kubernetes versions), started here on 127.0.0.1 with their state under one folder
(`.team/`), so that the code path a team uses runs and is tested before a team uses it:

    PostgreSQL        Debian's server binaries (`make postgres` installs them); MLflow's store
    S3 (moto server)  the buckets `mlflow` (MLflow's artifacts) and `dvc` (the DVC remote)
    MLflow server     backend postgresql+psycopg://, --artifacts-destination s3://mlflow, basic-auth
                      app (its users in sqlite, as in infra/; admin password generated into .team/)
    Ray               `ray start --head` and a second node joined with `ray start --address`,
                      token authentication (RAY_AUTH_MODE=token, the token in .team/)
    Prefect           a server, the process work pool `cs230-team` and a worker on it

`up` returns once every service answers and prints `export NAME=value` lines (so
`eval "$(cs230 team up)"` works): the project then talks to the services through the
environment alone, and DVC through its remote config (`up` sets this project's, --local).
Every process is started in its own session and recorded with its start time in
.team/state.json; `down` stops exactly those process groups, nothing else (never `ray stop`,
which stops every Ray on the machine). moto keeps objects in memory: `down` loses them.
"""
from __future__ import annotations

import glob
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from base64 import b64encode
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipelines.schedule import _free_port

BUCKETS = ("mlflow", "dvc")  # as infra/docker-compose.yml creates them
# each service's usual port, as infra/ publishes it, when free (another user's stack may hold it)
PORTS = {"postgres": 5432, "s3": 9000, "mlflow": 5000, "ray": 6379, "prefect": 4200}
WORK_POOL = "cs230-team"
AUTH_INI = Path("infra") / "mlflow_basic_auth.ini"  # MLflow's basic-auth config, shared with infra/
# every Ray node's settings, as infra/raycluster.yaml sets them (the token itself differs: a file
# here, a Secret there). Niceness 0: the search is the foreground job; Ray's default 15 starves
# trials on a busy machine.
RAY_NODE_ENV = {"RAY_AUTH_MODE": "token", "RAY_worker_niceness": "0", "RAY_USAGE_STATS_ENABLED": "0"}
ADMIN = "admin"
DB_USER = "mlflow"
STARTUP_S = 180  # per service, on a busy 2-core machine
# what a caller's environment may point elsewhere: services get the team's values or none
CLIENT_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
               "RAY_ADDRESS", "PREFECT_API_URL", "PREFECT_HOME")


class TeamError(RuntimeError):
    """One line for the user: a service that did not start, a missing engine."""


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None)
    if not found:
        raise TeamError(f"PostgreSQL's `{name}` not found: `make postgres` installs Debian's postgresql")
    return found


def _start_time(pid: int) -> str | None:
    """The process's start time (tells it from a later one with the same pid); None once it
    has exited (a zombie too: its parent, this process, has not reaped it yet)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in "ZX" else fields[19]


def _answers(url: str, auth: tuple[str, str] | None = None) -> bool:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


class Team:
    """The services of one state folder: its ports, secrets and processes (state.json)."""

    def __init__(self, folder: Path):
        self.dir = folder.resolve()
        self.state_file = self.dir / "state.json"
        self.state = json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file.touch(mode=0o600)
        self.state_file.write_text(json.dumps(self.state, indent=2) + "\n")

    # -- what clients use -------------------------------------------------------------
    def client_env(self) -> dict[str, str]:
        p, s = self.state["ports"], self.state["secrets"]
        s3 = f"http://127.0.0.1:{p['s3']}"
        return {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{p['mlflow']}", "MLFLOW_TRACKING_USERNAME": ADMIN,
                "MLFLOW_TRACKING_PASSWORD": s["mlflow_admin"], "RAY_ADDRESS": f"127.0.0.1:{p['ray']}",
                "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.dir / "ray" / "auth_token"),
                "PREFECT_API_URL": f"http://127.0.0.1:{p['prefect']}/api",
                "PREFECT_DEFAULT_WORK_POOL_NAME": WORK_POOL, "AWS_ACCESS_KEY_ID": s["aws_key"],
                "AWS_SECRET_ACCESS_KEY": s["aws_secret"], "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": s3, "MLFLOW_S3_ENDPOINT_URL": s3}

    def dvc_remote_commands(self) -> list[list[str]]:
        """DVC's remote config for a clone (--local: .dvc/config.local, not committed)."""
        return [["dvc", "remote", "add", "--local", "--force", "--default", "team", "s3://dvc"],
                ["dvc", "remote", "modify", "--local", "team", "endpointurl", f"http://127.0.0.1:{self.state['ports']['s3']}"]]

    def postgres_uri(self, database: str, driver: str = "") -> str:
        """No password: clients take it from PGPASSWORD (libpq), so it is in no URI or `ps`."""
        return f"postgresql{driver}://{DB_USER}@127.0.0.1:{self.state['ports']['postgres']}/{database}"

    def exports(self) -> str:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in self.client_env().items()]
        dvc = " && ".join(shlex.join(c) for c in self.dvc_remote_commands())
        return "\n".join(lines + [f"# DVC remote, set for this project; in another clone run: {dvc}"])

    # -- processes ----------------------------------------------------------------------
    def alive(self, name: str) -> bool:
        entry = self.state.get("pids", {}).get(name)
        return bool(entry) and _start_time(entry[0]) == entry[1]

    def spawn(self, name: str, cmd: list[str], env: dict[str, str], user: str | None = None) -> None:
        log = open(self.dir / "logs" / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, **_as_user(user))
        log.close()
        self.state.setdefault("pids", {})[name] = [proc.pid, _start_time(proc.pid)]
        self.save()

    def wait_for(self, name: str, ready) -> None:
        deadline = time.time() + STARTUP_S
        while not ready():
            if not self.alive(name) or time.time() > deadline:
                lines = (self.dir / "logs" / f"{name}.log").read_text(errors="replace").strip().splitlines()
                errors = [ln for ln in lines if "Error" in ln or "Exception" in ln or "FATAL" in ln] or lines
                raise TeamError(f"{name} did not start ({errors[-1] if errors else 'no output'}); "
                                f"log: {self.dir / 'logs' / (name + '.log')}")
            time.sleep(0.3)

    def stop(self, names: list[str], timeout_s: float = 8) -> None:
        """Stop the process groups these services started (those still alive), together:
        SIGTERM, then SIGKILL what is left after `timeout_s`. A Ray node gets its SIGTERM alone:
        `ray start --block` then drains the node and stops its own processes (its GCS, which it
        drains through, must outlive that)."""
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5)):
            running = [n for n in names if self.alive(n)]
            for name in running:
                pid = self.state["pids"][name][0]
                try:
                    os.kill(pid, sig) if sig == signal.SIGTERM and name.startswith("ray-") else os.killpg(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + wait_s
            while any(self.alive(n) for n in running) and time.time() < deadline:
                time.sleep(0.2)
        for name in names:
            self.state.get("pids", {}).pop(name, None)
        self.save()

    # -- services -----------------------------------------------------------------------
    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        return env

    def start_postgres(self) -> None:
        data, user = self.dir / "postgres", "postgres" if os.geteuid() == 0 else None  # it refuses root
        if not (data / "PG_VERSION").is_file():
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            pwfile = self.dir / "postgres.pw"
            pwfile.write_text(self.state["secrets"]["postgres"] + "\n")
            if user:
                _let_user_reach(data, user, pwfile)
            proc = subprocess.run([_postgres_bin("initdb"), "-D", str(data), "-U", DB_USER, "--pwfile", str(pwfile),
                                   "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"],
                                  capture_output=True, text=True, **_as_user(user))
            pwfile.unlink()
            if proc.returncode != 0:
                raise TeamError(f"initdb failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1]}")
        self.spawn("postgres", [_postgres_bin("postgres"), "-D", str(data), "-h", "127.0.0.1", "-p",
                                str(self.state["ports"]["postgres"]), "-c", "unix_socket_directories="],
                   self.base_env(), user)

    def create_database(self) -> None:
        import psycopg

        def connect():
            return psycopg.connect(self.postgres_uri("postgres"), password=self.state["secrets"]["postgres"],
                                   autocommit=True)

        def ready() -> bool:
            try:
                connect().close()
                return True
            except psycopg.OperationalError:
                return False

        self.wait_for("postgres", ready)
        with connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'mlflow'")
            if cur.fetchone() is None:
                cur.execute("CREATE DATABASE mlflow")

    def start_s3(self) -> None:
        self.spawn("s3", [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self.state["ports"]["s3"])], self.base_env())

    def create_bucket(self) -> None:
        url = f"http://127.0.0.1:{self.state['ports']['s3']}"
        self.wait_for("s3", lambda: _answers(f"{url}/moto-api/"))
        for bucket in BUCKETS:
            urllib.request.urlopen(urllib.request.Request(f"{url}/{bucket}", method="PUT"), timeout=10).close()

    def mlflow_server_env(self) -> dict[str, str]:
        """The tracking server's environment: the names infra/docker-compose.yml gives it."""
        s = self.state["secrets"]
        return {"MLFLOW_AUTH_CONFIG_PATH": str(self.dir / "mlflow" / "basic_auth.ini"),
                "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN, "MLFLOW_AUTH_ADMIN_PASSWORD": s["mlflow_admin"],
                "MLFLOW_FLASK_SERVER_SECRET_KEY": s["mlflow_flask"],  # the auth app's CSRF key
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # GenAI scoring jobs: unused, they hold up startup
                "PGPASSWORD": s["postgres"],  # libpq reads it: no password in the URIs or `ps`
                "AWS_ACCESS_KEY_ID": s["aws_key"], "AWS_SECRET_ACCESS_KEY": s["aws_secret"],
                "AWS_DEFAULT_REGION": "us-east-1",
                "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.state['ports']['s3']}"}

    def start_mlflow(self) -> None:
        """infra's basic-auth config, with its users in a sqlite file here (as in a compose volume)."""
        ini = self.dir / "mlflow" / "basic_auth.ini"
        ini.parent.mkdir(exist_ok=True)
        ini.write_text(re.sub(r"(?m)^database_uri = .*$", f"database_uri = sqlite:///{ini.parent / 'basic_auth.db'}",
                              AUTH_INI.read_text()))
        self.spawn("mlflow", [_bin("mlflow"), "server", "--backend-store-uri", self.postgres_uri("mlflow", "+psycopg"),
                              "--artifacts-destination", "s3://mlflow", "--app-name", "basic-auth",
                              "--host", "127.0.0.1", "--port", str(self.state["ports"]["mlflow"]), "--workers", "1"],
                   {**self.base_env(), **self.mlflow_server_env()})

    def wait_mlflow(self) -> None:
        url = f"http://127.0.0.1:{self.state['ports']['mlflow']}/api/2.0/mlflow/experiments/search?max_results=1"
        self.wait_for("mlflow", lambda: _answers(url, (ADMIN, self.state["secrets"]["mlflow_admin"])))

    def ray_env(self) -> dict[str, str]:
        return {**self.base_env(), **RAY_NODE_ENV, "RAY_AUTH_TOKEN_PATH": str(self.dir / "ray" / "auth_token")}

    def start_ray(self, node: str, cpus: int) -> None:
        """`ray start` of the head or the worker node: its own CPU count and free ports."""
        token = self.dir / "ray" / "auth_token"
        if not token.is_file():
            token.parent.mkdir(exist_ok=True)
            token.touch(mode=0o600)
            token.write_text(secrets.token_hex(32))
        ports = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
        cmd = [_bin("ray"), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
               "--num-gpus", "0", "--object-store-memory", str(128 * 2**20), "--disable-usage-stats",
               *[a for flag in ports for a in (flag, str(_free_port(0)))]]
        if node == "ray-head":
            cmd += ["--head", "--port", str(self.state["ports"]["ray"]), "--include-dashboard", "false",
                    "--ray-client-server-port", str(_free_port(0)), "--temp-dir", self.state["ray_temp"]]
        else:
            cmd += ["--address", f"127.0.0.1:{self.state['ports']['ray']}"]
        self.spawn(node, cmd, self.ray_env())

    def wait_ray(self, node: str) -> None:
        log = self.dir / "logs" / f"{node}.log"
        self.wait_for(node, lambda: "Ray runtime started" in log.read_text(errors="replace"))

    def start_prefect(self) -> None:
        env = {**self.base_env(), "PREFECT_HOME": str(self.dir / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        self.spawn("prefect", [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                               str(self.state["ports"]["prefect"])], env)

    def start_worker(self) -> None:
        """The worker runs flow runs in processes with the clients' environment."""
        self.wait_for("prefect", lambda: _answers(f"http://127.0.0.1:{self.state['ports']['prefect']}/api/health"))
        env = {**self.base_env(), **self.client_env(), "PREFECT_HOME": str(self.dir / "prefect-worker")}
        self.spawn("prefect-worker", [_bin("prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process",
                                      "--name", "cs230-team-worker"], env)

    def wait_worker(self) -> None:
        log = self.dir / "logs" / "prefect-worker.log"
        self.wait_for("prefect-worker", lambda: "started!" in log.read_text(errors="replace"))


def _as_user(user: str | None) -> dict:
    """subprocess arguments that run a child as `user` with that user's group only (a root
    group would make the parents' group bits, not their search bit for others, apply)."""
    return {"user": user, "group": user, "extra_groups": []} if user else {}


def _let_user_reach(data: Path, user: str, *files: Path) -> None:
    """As root, PostgreSQL runs as `user`: it owns its data and may pass through the parents
    (search permission only, the way pgserver does it)."""
    for path in (data, *files):
        shutil.chown(path, user)
    for parent in data.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


SERVICES = ("prefect-worker", "prefect", "ray-worker", "ray-head", "mlflow", "s3", "postgres")  # stop order


@contextmanager
def ray_cluster(folder: Path, head_cpus: int, worker_cpus: int = 0) -> Iterator[dict[str, str]]:
    """The Ray part of the stack alone (benchmarks/tune_scaling.py): a head node, and a
    second node when `worker_cpus` > 0; yields the driver's environment."""
    team = Team(folder)
    (team.dir / "logs").mkdir(parents=True, exist_ok=True)
    team.state.update(ports={"ray": _free_port(0)}, ray_temp=f"/tmp/cs230-ray-{secrets.token_hex(4)}")
    nodes = ["ray-head"] + (["ray-worker"] if worker_cpus else [])
    try:
        for node, cpus in zip(nodes, (head_cpus, worker_cpus)):
            team.start_ray(node, cpus)
            team.wait_ray(node)
        yield {"RAY_ADDRESS": f"127.0.0.1:{team.state['ports']['ray']}", "RAY_AUTH_MODE": "token",
               "RAY_AUTH_TOKEN_PATH": str(team.dir / "ray" / "auth_token")}
    finally:
        team.stop(nodes)
        shutil.rmtree(team.state["ray_temp"], ignore_errors=True)


def up(folder: Path, head_cpus: int, worker_cpus: int) -> Team:
    team = Team(folder)
    if team.state and all(team.alive(name) for name in SERVICES):
        return team
    down(folder, quiet=True)  # a half-started or stale stack: start afresh (postgres data is kept)
    team = Team(folder)
    (team.dir / "logs").mkdir(parents=True, exist_ok=True)
    team.state.setdefault("secrets", {k: secrets.token_urlsafe(18) for k in
                                      ("postgres", "mlflow_admin", "mlflow_flask", "aws_key", "aws_secret")})
    team.state["ports"] = {name: _free_port(port) for name, port in PORTS.items()}
    team.state["ray_temp"] = f"/tmp/cs230-ray-{secrets.token_hex(4)}"  # short: Ray's socket paths have a limit
    team.save()
    started = time.perf_counter()
    try:
        team.start_postgres()
        team.start_s3()
        team.start_ray("ray-head", head_cpus)
        team.start_prefect()
        team.create_database()
        team.create_bucket()
        team.start_mlflow()
        team.wait_ray("ray-head")
        team.start_ray("ray-worker", worker_cpus)
        team.start_worker()
        team.wait_mlflow()
        team.wait_ray("ray-worker")
        team.wait_worker()
    except BaseException:
        down(folder, quiet=True)
        raise
    for cmd in team.dvc_remote_commands():
        subprocess.run(cmd, check=True, capture_output=True)
    team.state["startup_s"] = round(time.perf_counter() - started, 1)
    team.save()
    return team


def down(folder: Path, quiet: bool = False) -> None:
    team = Team(folder)
    if not team.state:  # nothing was started here
        return
    if not quiet:
        for name in SERVICES:
            if team.alive(name):
                print(f"stopping {name} (pid {team.state['pids'][name][0]})", file=sys.stderr)
    team.stop(list(SERVICES))
    if team.state.get("ray_temp"):
        shutil.rmtree(team.state["ray_temp"], ignore_errors=True)
    if Path(".dvc").is_dir():
        subprocess.run(["dvc", "remote", "remove", "--local", "team"], capture_output=True)


def cmd_team(args) -> int:
    folder = Path(args.dir)
    try:
        if args.action == "down":
            down(folder)
            return 0
        team = up(folder, args.head_cpus, args.worker_cpus)
    except TeamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"team services up in {team.state.get('startup_s', 0):.0f} s (state and logs: {team.dir}); "
          f"stop them with: cs230 team down", file=sys.stderr)
    print(team.exports())
    return 0


def add_parser(sub) -> None:
    team = sub.add_parser("team", help="start/stop the team services on this machine (prints their env)")
    team.add_argument("action", choices=["up", "down"])
    team.add_argument("--dir", default=".team", help="state folder (default: .team)")
    team.add_argument("--head-cpus", type=int, default=1, help="CPUs of the Ray head node (default 1)")
    team.add_argument("--worker-cpus", type=int, default=1, help="CPUs of the second Ray node (default 1)")
    team.set_defaults(handler=cmd_team)
