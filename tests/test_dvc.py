"""The data stages under DVC, in a throwaway repo: repro, no-op repro, push, delete, pull.
(The whole graph, model stages included, is exercised by test_flow.py.)"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT_ROOT, TINY, write_params

pytestmark = pytest.mark.timeout(600)


# stage commands say `python`: it must be this environment's
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def sh(*cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def dvc(*args, cwd):
    return sh(str(Path(sys.executable).parent / "dvc"), *args, cwd=cwd)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git+DVC repo holding this project's stages, a tiny params.yaml and a local remote."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(PROJECT_ROOT / "components", root / "components", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "data.dvc", ".gitignore"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    write_params(root / "params.yaml", TINY)
    (root / "data" / "raw").mkdir(parents=True)
    sh("git", "init", "-q", cwd=root)
    dvc("init", "-q", cwd=root)
    dvc("remote", "add", "-d", "store", str(tmp_path_factory.mktemp("remote")), cwd=root)
    dvc("config", "cache.type", "reflink,hardlink,copy", cwd=root)
    return root


DATA = "trigger_word-split"   # the target whose upstream is every data stage


def test_repro_runs_every_stage_then_nothing(repo):
    out = dvc("repro", DATA, cwd=repo)
    for stage in ("validate_raw", "generate", "validate_generated", "split"):
        assert f"Running stage 'trigger_word-{stage}'" in out
    assert (repo / "data/trigger_word/split/train.txt").read_text().strip()
    again = dvc("repro", DATA, cwd=repo)
    assert "Running stage" not in again
    assert "Data and pipelines are up to date" in dvc("status", DATA, cwd=repo)


def test_param_change_reruns_only_dependants(repo):
    params = (repo / "params.yaml").read_text()
    changed = yaml.safe_load(params)
    changed["trigger_word"]["split"].update(val=0.15, test=0.05)
    (repo / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    out = dvc("repro", DATA, cwd=repo)
    assert "Running stage 'trigger_word-split'" in out
    assert "Running stage 'trigger_word-generate'" not in out
    (repo / "params.yaml").write_text(params)
    dvc("repro", DATA, cwd=repo)


def test_push_delete_pull_round_trip(repo):
    manifest = (repo / "data/trigger_word/generated/manifest.csv").read_bytes()
    train = (repo / "data/trigger_word/split/train.txt").read_bytes()
    dvc("push", "--with-deps", DATA, cwd=repo)
    shutil.rmtree(repo / "data/trigger_word")
    shutil.rmtree(repo / ".dvc/cache")
    dvc("pull", "--with-deps", DATA, cwd=repo)
    assert (repo / "data/trigger_word/generated/manifest.csv").read_bytes() == manifest
    assert (repo / "data/trigger_word/split/train.txt").read_bytes() == train
    assert "Data and pipelines are up to date" in dvc("status", DATA, cwd=repo)
