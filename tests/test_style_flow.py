"""The style-transfer pipeline end to end on tiny params: every dvc.yaml stage of it in order (each
stage's own CLI, in process, in a fresh folder), `style-swirl` registered as champion in a real
sqlite MLflow store, then `cs230 stylize --model style-swirl`, `cs230 export --style style-swirl` (ONNX) and POST
/v1/style/swirl serve it."""
from __future__ import annotations

import importlib
import io
import json
import shlex
import shutil

import mlflow
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from conftest import PROJECT_ROOT, STYLE_TINY, write_sections
from pipelines.stages import pipeline_stages

pytestmark = pytest.mark.timeout(120)


def png(side: int, seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def test_tiny_flow_registers_stylizes_and_serves(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)  # an earlier test's set_tracking_uri would win over the variable
    try:
        flow_registers_stylizes_and_serves(tmp_path, uri, capsys)
    finally:
        mlflow.set_tracking_uri(previous)


def flow_registers_stylizes_and_serves(tmp_path, uri, capsys):
    from mlflow import MlflowClient

    from components import stylize
    from components.serve import ServeConfig, create_app
    from pipelines import cli

    shutil.copy(PROJECT_ROOT / "dvc.yaml", tmp_path)  # a project, for the cs230 CLI
    write_sections(tmp_path / "params.yaml", {"style_transfer": {**STYLE_TINY, "style": "swirl"}})
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for stage in pipeline_stages("style-transfer", PROJECT_ROOT / "dvc.yaml"):
        _, _, module, *args = shlex.split(stages[stage.name]["cmd"])
        assert importlib.import_module(module).main(args) == 0, stage.short
    champion = MlflowClient(uri).get_model_version_by_alias("style-swirl", "champion")
    assert int(champion.version) == 1 and champion.tags["style"] == "swirl"
    assert (tmp_path / "reports/style_transfer/evaluate/grid.png").is_file()

    (tmp_path / "photo.png").write_bytes(png(48))
    capsys.readouterr()
    assert stylize.main(["photo.png", "-o", "out.png", "--model", "style-swirl"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["style"] == "swirl" and Image.open(tmp_path / "out.png").size == (64, 64)  # image_size

    assert cli.main(["export", "--style", "style-swirl", "--out", "export"]) == 0
    exported = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert exported["style"] == "swirl" and exported["max_abs_diff"] < 1e-4
    assert (tmp_path / "export/style_net.onnx").stat().st_size > 1000

    config = ServeConfig(refs={"style": "models:/style-swirl@champion"}, tracking_uri=uri, token="t0k")
    with TestClient(create_app(config)) as client:
        auth = {"Authorization": "Bearer t0k"}
        answer = client.post("/v1/style/swirl", content=png(40), headers={**auth, "Content-Type": "image/png"})
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(answer.content)).size == (40, 40) and answer.headers["X-Model-Version"] == "1"
        assert client.post("/v1/style/mosaic", content=png(40), headers={**auth, "Content-Type": "image/png"}
                           ).status_code == 404
        assert client.post("/v1/style/swirl", content=b"not an image",
                           headers={**auth, "Content-Type": "image/png"}).status_code == 400
        assert client.post("/v1/style/swirl", content=png(40), headers={"Content-Type": "image/png"}).status_code == 401
