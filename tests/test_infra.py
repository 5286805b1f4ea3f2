"""infra/ (DESIGN §7): the team deployment is safe by default. No container engine or Kubernetes
runs here, so the compose and KubeRay files are checked as data: every published port on
loopback, every secret from the environment with no default, every image pinned, the Ray head
not exposed. MLflow's basic-auth is checked for real: `mlflow server --app-name basic-auth` with
infra's own config refuses an anonymous or read-only client that tries to move `champion`."""
from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import PROJECT_ROOT, free_port

INFRA = PROJECT_ROOT / "infra"
COMPOSE = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
RAY = list(yaml.safe_load_all((INFRA / "raycluster.yaml").read_text()))
LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY")


def published(port) -> tuple[str | None, str]:
    """(host address or None for all interfaces, the port spec) of a compose `ports` entry."""
    if isinstance(port, dict):  # long syntax
        return port.get("host_ip"), str(port)
    parts = str(port).rsplit(":", 2)
    return (parts[0] if len(parts) == 3 else None), str(port)


def images() -> list[str]:
    found = [s["image"] for s in COMPOSE["services"].values()]

    def walk(node):
        if isinstance(node, dict):
            found.extend([node["image"]] if isinstance(node.get("image"), str) else [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(RAY)
    return found


def test_every_published_port_is_on_loopback():
    ports = [(name, *published(p)) for name, s in COMPOSE["services"].items() for p in s.get("ports", [])]
    assert ports, "the compose file publishes nothing: the check would be empty"
    for name, host, spec in ports:
        assert host in LOOPBACK, f"{name}: port {spec} is published on all interfaces"
    assert "ports" not in COMPOSE["services"]["postgres"]  # the database is on the compose network only


def test_secrets_come_from_the_environment_without_defaults():
    text = (INFRA / "docker-compose.yml").read_text()
    defaults = re.findall(r"\$\{\w+:?[-=][^}]*\}", text)  # ${VAR:-x} and ${VAR-x}, compose's or a shell's
    assert not defaults, f"defaults in the compose file: {defaults}"
    for name, service in COMPOSE["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), f"{name}.{key} is not ${{VAR:?...}}: {value!r}"
    ini = configparser.ConfigParser()
    ini.read(INFRA / "mlflow_basic_auth.ini")
    assert "admin_password" not in ini["mlflow"]  # nor in MLflow's auth config


def test_every_image_is_pinned_to_a_version():
    found = images()
    assert len(found) >= 7  # postgres, minio, mc, mlflow, prefect, ray head, ray worker
    for image in found:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag and tag != "latest" and re.search(r"\d", tag), f"unpinned image {image!r}"
    command = COMPOSE["services"]["mlflow"]["command"]
    for package in re.findall(r"pip install --quiet ([^&]+)&&", command)[0].split():
        assert "==" in package, f"mlflow installs {package} unpinned"


def test_mlflow_runs_with_basic_auth_and_read_only_users():
    mlflow = COMPOSE["services"]["mlflow"]
    assert "--app-name basic-auth" in mlflow["command"]
    env = mlflow["environment"]
    assert {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_CONFIG_PATH"} <= set(env)
    mounted = {v.split(":")[1]: v.split(":")[0] for v in mlflow["volumes"] if v.startswith("./")}
    assert mounted[env["MLFLOW_AUTH_CONFIG_PATH"]] == "./mlflow_basic_auth.ini"
    ini = configparser.ConfigParser()
    ini.read(INFRA / "mlflow_basic_auth.ini")
    assert ini["mlflow"]["default_permission"] in ("READ", "NO_PERMISSIONS")


def test_the_ray_head_is_not_exposed():
    cluster = next(d for d in RAY if d["kind"] == "RayCluster")
    head = cluster["spec"]["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert head["rayStartParams"]["dashboard-host"] in LOOPBACK  # its job API runs any code
    policy = next(d for d in RAY if d["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert "Ingress" in policy["spec"]["policyTypes"] and all("from" in rule for rule in policy["spec"]["ingress"])


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """`mlflow server --app-name basic-auth` on loopback with infra's config (its auth database moved
    to a temporary folder), admin credentials from the environment as compose passes them."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    ini = (INFRA / "mlflow_basic_auth.ini").read_text()
    (root / "auth.ini").write_text(re.sub(r"(?m)^database_uri = .*$", f"database_uri = sqlite:///{root / 'auth.db'}",
                                          ini))
    port, admin = free_port(), ("admin", "a-long-admin-password-1")
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(root / "auth.ini"), "MLFLOW_AUTH_ADMIN_USERNAME": admin[0],
           "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1], "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth",
                             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            httpx.get(f"{url}/health", timeout=5)
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url, admin
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_an_anonymous_or_read_only_client_cannot_move_champion(auth_server):
    url, admin = auth_server
    reader = ("teammate", "a-long-user-password-1")
    alias = {"name": "trigger-word-activate", "alias": "champion", "version": "1"}
    with httpx.Client(base_url=f"{url}/api/2.0/mlflow", timeout=120) as api:  # password hashing is slow under load
        assert api.post("/registered-models/create", json={"name": alias["name"]}, auth=admin).status_code == 200
        experiment = api.post("/experiments/create", json={"name": "e"}, auth=admin).json()["experiment_id"]
        run = api.post("/runs/create", json={"experiment_id": experiment}, auth=admin).json()["run"]["info"]
        r = api.post("/model-versions/create", auth=admin, json={
            "name": alias["name"], "source": f"runs:/{run['run_id']}/model", "run_id": run["run_id"]})
        assert r.status_code == 200, r.text
        r = api.post("/users/create", json={"username": reader[0], "password": reader[1]}, auth=admin)
        assert r.status_code == 200, r.text
        assert api.post("/registered-models/alias", json=alias).status_code == 401  # anonymous
        assert api.post("/registered-models/alias", json=alias, auth=reader).status_code == 403
        assert api.get("/registered-models/get", params={"name": alias["name"]}, auth=reader).status_code == 200
        assert api.post("/registered-models/alias", json=alias, auth=admin).status_code == 200
