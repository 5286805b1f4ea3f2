"""The day-night and face flows end to end on tiny configurations, in a fresh clone of their own
(conftest.flow_repo), then the commands that use their champions: `cs230 classify`, `cs230 face`."""
import json
import os

import mlflow
import pytest

from conftest import YALE, cs230, needs_yale
from pipelines.stages import pipeline_stages

pytestmark = pytest.mark.timeout(900)


@pytest.fixture()
def project(harness, in_repo):
    """The clone, with data/raw as `cs230 run` makes it first (no trigger-word run made it here)."""
    from pipelines.cli import ensure_raw_inputs

    ensure_raw_inputs()
    return in_repo


def test_day_night_flow_registers_and_classifies(project):
    """The second pipeline on the same stages: every stage runs, `day-night` version 1 is
    champion, and `cs230 classify` scores images with it (a bad file gets its own line)."""
    import numpy as np
    from PIL import Image

    from pipelines.flow import day_night_flow

    result = day_night_flow(push=True)  # as `cs230 run` does
    assert [o.stage for o in result.outcomes] == [s.short for s in pipeline_stages("day-night")]
    assert {o.status for o in result.outcomes} == {"ran"}
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("day-night", "champion")
    assert int(version.version) == 1 and float(version.tags["gate.roc_auc"]) >= 0
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["pipeline"] == "day-night" and "accuracy_test" in run.data.metrics
    assert len(client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")) == 2

    images = np.load(project / "data/day_night/generated/images.npy")
    Image.fromarray(images[0]).resize((200, 150)).save(project.parent / "photo.png")
    (project.parent / "broken.jpg").write_bytes(b"not an image")
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "PREFECT_HOME")}
    proc = cs230(project, env, "classify", "../photo.png", "../broken.jpg")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1, proc.stderr
    assert lines[0]["file"] == "../photo.png" and 0 <= lines[0]["p_night"] <= 1
    assert lines[0]["label"] == ("night" if lines[0]["p_night"] >= 0.5 else "day")
    assert lines[1]["file"] == "../broken.jpg" and "error" in lines[1]


@needs_yale
def test_face_flow_registers_and_every_face_command_works(project):
    """The third pipeline: `face-encoder` version 1 is champion, then `cs230 face` embed, verify,
    enroll, identify and cluster work with it on rendered faces (--cropped: they are chips) and on
    a real photo (detected and aligned); a bad image gets its own line."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from pipelines.flow import FLOWS

    result = FLOWS["face"](push=False)
    assert [o.stage for o in result.outcomes] == [s.short for s in pipeline_stages("face")]
    version = mlflow.MlflowClient().get_model_version_by_alias("face-encoder", "champion")
    assert int(version.version) == 1

    work = project / "photos"  # cs230 runs inside a project; relative paths are the caller's
    images = np.load(project / "data/face/generated/images.npy")
    manifest = pd.read_csv(project / "data/face/generated/manifest.csv", dtype={"identity": str})
    people = manifest.groupby("identity").image_id.apply(list).iloc[:3]
    for person, ids in people.items():  # first image enrolled, second a query
        for kind, i in (("gallery", ids[0]), ("queries", ids[1])):
            (work / kind / person).mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(work / kind / person / f"{i}.png")
    (work / "real").mkdir()
    (work / "real" / "photo.png").write_bytes((YALE / "subject01" / "normal.png").read_bytes())
    (work / "broken.jpg").write_bytes(b"not an image")
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "PREFECT_HOME")}

    def face(*args) -> tuple[int, list[dict]]:
        proc = cs230(work, env, "face", *args)
        assert proc.returncode in (0, 1), proc.stderr
        return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]

    status, records = face("embed", "real/photo.png", "broken.jpg")
    assert status == 1 and len(records[0]["faces"]) == 1 and len(records[0]["faces"][0]["embedding"]) == 128
    assert records[1]["file"] == "broken.jpg" and "error" in records[1]
    first, second = (next((work / "queries" / p).iterdir()) for p in people.index[:2])
    status, (record,) = face("verify", str(first), str(second), "--cropped")
    assert status == 0 and set(record) == {"a", "b", "distance", "p_same", "same"} and 0 <= record["p_same"] <= 1
    assert face("enroll", "gallery", "--index", "index", "--cropped")[0] == 0
    status, records = face("identify", "--index", "index", "queries", "--cropped")
    assert status == 0 and len(records) == 3
    assert all(r["identity"] in set(people.index) | {"unknown"} and r["distance"] >= 0 for r in records)
    status, records = face("cluster", "queries", "--cropped")
    assert status == 0 and all(isinstance(r["cluster"], int) for r in records)
