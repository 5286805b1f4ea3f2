"""`cs230 face` and the face routes of `cs230 serve` on real photos (Yale faces), with a real
encoder: the dlib-head kind with its untrained head, which is exactly dlib's pretrained encoder,
so identities are told apart without training anything. Per-file errors for bad images; a
gallery refuses another encoder; serve answers as the CLI does, with the same limits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from components.config import ServeParams, load_params
from components.serve import ServeConfig, create_app
from conftest import YALE, needs_yale
from pipelines.cli import main

pytestmark = needs_yale
LIMITS = ServeParams(poll_seconds=0.0, max_body_bytes=2_000_000, max_image_pixels=1_000_000)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:
    """Two encoders (dlib's, at threshold 0.4; a random CNN), a gallery folder of three people,
    and bad images: not an image, an image without a face."""
    from components.face.encoder import EncoderConfig, build_encoder, save_encoder

    d = tmp_path_factory.mktemp("face-use")
    head_cfg = EncoderConfig.from_params(load_params().face.model, kind="dlib_head", width=16, depth=1)
    dlib_like = build_encoder(head_cfg, seed=0)
    dlib_like.threshold, dlib_like.calibration = 0.4, (6.0, -15.0)
    save_encoder(dlib_like, d / "dlib" / "encoder.pt")
    save_encoder(build_encoder(EncoderConfig(kind="cnn", width=4, depth=2, image_size=32), seed=0), d / "cnn.pt")
    for person in ("subject01", "subject02", "subject03"):
        (d / "gallery" / person).mkdir(parents=True)
        (d / "gallery" / person / "normal.png").write_bytes((YALE / person / "normal.png").read_bytes())
    (d / "junk.png").write_bytes(b"not an image")
    ramp = np.tile(np.linspace(0, 255, 200, dtype=np.uint8), (200, 1))
    Image.fromarray(np.stack([ramp] * 3, -1)).save(d / "noface.png")
    return {"dir": d, "dlib": d / "dlib" / "encoder.pt", "cnn": d / "cnn.pt"}


def face(args: list[str], capsys) -> tuple[int, list[dict], str]:
    status = main(["face", *args])
    out, err = capsys.readouterr()
    return status, [json.loads(line) for line in out.splitlines()], err


def test_every_bad_image_gets_its_own_error_and_a_nonzero_exit(work, capsys):
    d = work["dir"]
    status, records, _ = face(["embed", str(YALE / "subject01" / "happy.png"), str(d / "junk.png"),
                               str(d / "noface.png"), str(d / "missing.png"), "--model", str(work["cnn"])], capsys)
    assert status == 1 and [r["file"] for r in records][1:] == [str(d / n) for n in ("junk.png", "noface.png",
                                                                                     "missing.png")]
    good, junk, noface, missing = records
    assert len(good["faces"]) == 1 and len(good["faces"][0]["embedding"]) == 128
    x, y, w, h = good["faces"][0]["box"]
    assert 80 < x + w / 2 < 240 and w > 60  # the face, not the whole 320x243 photo
    assert "not a readable image" in junk["error"] and "no face found" in noface["error"]
    assert missing["error"] == "no such file or directory"
    status, records, _ = face(["embed", str(d / "noface.png"), "--cropped", "--model", str(work["cnn"])], capsys)
    assert status == 0 and records[0]["faces"][0]["box"] == [0, 0, 200, 200]  # --cropped: the whole image
    status, _, err = face(["embed", str(d / "noface.png"), "--model", str(d / "nothing")], capsys)
    assert status == 2 and err.startswith("error: model") and "\n" == err[-1] and err.count("\n") == 1


def test_verify_enroll_identify_and_cluster_on_real_photos(work, capsys, tmp_path):
    d, model = work["dir"], ["--model", str(work["dlib"])]
    status, records, _ = face(["verify", str(YALE / "subject01/normal.png"), str(YALE / "subject01/sad.png"), *model],
                              capsys)
    assert status == 0 and records[0]["same"] is True and records[0]["p_same"] > 0.5
    (tmp_path / "pairs.csv").write_text("a,b\nsubject01/happy.png,subject01/wink.png\n"
                                        "subject01/happy.png,subject03/happy.png\nsubject01/happy.png,nope.png\n")
    for person in ("subject01", "subject03"):
        (tmp_path / person).mkdir()
        for condition in ("happy", "wink"):
            (tmp_path / person / f"{condition}.png").write_bytes((YALE / person / f"{condition}.png").read_bytes())
    status, (same, other, bad), _ = face(["verify", "--pairs", str(tmp_path / "pairs.csv"), *model], capsys)
    assert status == 1 and same["same"] and not other["same"] and same["distance"] < other["distance"]
    assert bad["file"] == "nope.png" and bad["error"] == "no such file or directory"

    index = tmp_path / "index"
    status, records, _ = face(["enroll", str(d / "gallery"), "--index", str(index), *model], capsys)
    assert status == 0 and [r["identity"] for r in records] == ["subject01", "subject02", "subject03"]
    status, _, err = face(["enroll", str(d / "gallery"), "--index", str(index), *model], capsys)
    assert status == 2 and "pass --force" in err
    assert face(["enroll", str(d / "gallery"), "--index", str(index), "--force", *model], capsys)[0] == 0
    queries = [str(YALE / "subject02/happy.png"), str(YALE / "subject03/glasses.png"), str(YALE / "subject09/sad.png")]
    status, records, _ = face(["identify", "--index", str(index), *queries, *model], capsys)
    assert status == 0 and [r["identity"] for r in records] == ["subject02", "subject03", "unknown"]
    assert records[2]["distance"] > 0.4 > records[0]["distance"]
    status, _, err = face(["identify", "--index", str(index), queries[0], "--model", str(work["cnn"])], capsys)
    assert status == 2 and "enrolled with encoder" in err and "enroll again" in err

    status, records, _ = face(["cluster", str(tmp_path / "subject01"), str(tmp_path / "subject03"),
                               str(d / "junk.png"), *model], capsys)
    assert status == 1 and "error" in records[-1]
    assert [r["cluster"] for r in records[:4]] == [0, 0, 1, 1]


def test_serve_face_routes_answer_as_the_cli(work, tmp_path, capsys):
    from components.face.search import Gallery
    from components.face_commands import embed_file, load_encoder_ref

    index = tmp_path / "index"
    assert main(["face", "enroll", str(work["dir"] / "gallery"), "--index", str(index),
                 "--model", str(work["dlib"])]) == 0
    capsys.readouterr()
    happy, sad = ((YALE / "subject01" / f"{c}.png").read_bytes() for c in ("happy", "sad"))
    config = ServeConfig({"face": str(work["dlib"])}, limits=LIMITS, face_index=str(index), token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    with TestClient(create_app(config)) as c:
        assert c.post("/v1/face/embed", content=happy, headers={"Content-Type": "image/png"}).status_code == 401
        r = c.post("/v1/face/embed", files={"file": ("happy.png", happy, "image/png")}, headers=auth)
        assert r.status_code == 200, r.text
        expected = embed_file(load_encoder_ref(str(work["dlib"])), YALE / "subject01" / "happy.png")
        assert r.json() == {"file": "happy.png", **expected}
        r = c.post("/v1/face/verify", files={"a": ("happy.png", happy), "b": ("sad.png", sad)}, headers=auth)
        assert r.status_code == 200 and r.json()["same"] is True and r.json()["a"] == "happy.png", r.text
        r = c.post("/v1/face/identify?threshold=0.5", content=sad, headers={**auth, "Content-Type": "image/png"})
        assert r.status_code == 200 and r.json()["identity"] == "subject01", r.text
        errors = {
            400: c.post("/v1/face/embed", content=b"junk", headers={**auth, "Content-Type": "image/png"}),
            422: c.post("/v1/face/identify", content=(work["dir"] / "noface.png").read_bytes(),
                        headers={**auth, "Content-Type": "image/png"}),
            415: c.post("/v1/face/verify", content=happy, headers={**auth, "Content-Type": "image/png"}),
        }
        for status, r in errors.items():
            assert r.status_code == status and "error" in r.json(), (status, r.text)
        assert "no face found" in errors[422].json()["error"]
        big = tmp_path / "big.png"
        Image.new("RGB", (1001, 1000)).save(big)
        r = c.post("/v1/face/embed", content=big.read_bytes(), headers={**auth, "Content-Type": "image/png"})
        assert r.status_code == 413 and "max_image_pixels" in r.json()["error"]
        missing = c.post("/v1/face/verify", files={"a": ("happy.png", happy)}, headers=auth)
        assert missing.status_code == 400 and "'b'" in missing.json()["error"]
    other = tmp_path / "other"
    Gallery("another encoder").save(other)
    with TestClient(create_app(ServeConfig({"face": str(work["dlib"])}, limits=LIMITS, face_index=str(other)))) as c:
        r = c.post("/v1/face/identify", content=sad, headers={"Content-Type": "image/png"})
        assert r.status_code == 409 and "enroll it again" in r.json()["error"]
    with TestClient(create_app(ServeConfig({"face": str(work["dlib"])}, limits=LIMITS))) as c:
        r = c.post("/v1/face/identify", content=sad, headers={"Content-Type": "image/png"})
        assert r.status_code == 404 and "--face-index" in r.json()["error"]


def test_export_writes_fp32_and_int8_onnx_that_embed_like_torch(work, tmp_path, capsys, monkeypatch):
    """`cs230 export --face` on a small dataset laid out as the face stages write it: both files
    run in onnxruntime alone, fp32 gives the torch embeddings, int8 nearly; the table has every
    figure; a dlib-head encoder (no ONNX form) is refused in one line."""
    import pandas as pd

    from components.face.encoder import load_encoder
    from components.ondevice.face_onnx import OnnxEncoder

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # its own run, not the project's
    data, split = tmp_path / "generated", tmp_path / "split"
    data.mkdir(), split.mkdir()
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 255, (120, 40, 40, 3), dtype=np.uint8)
    np.save(data / "images.npy", chips)
    pd.DataFrame({"image_id": range(120), "identity": [f"r{i // 6}" for i in range(120)]}).to_csv(
        data / "manifest.csv", index=False)
    (split / "train.txt").write_text("\n".join(map(str, range(60))) + "\n")
    (split / "test.txt").write_text("\n".join(map(str, range(60, 120))) + "\n")
    args = ["export", "--face", "--model", str(work["cnn"]), "--out", str(tmp_path / "out")]
    paths = ["--data", str(data), "--split", str(split)]
    from components.face_export import main as export_main

    assert export_main(args[2:] + paths) == 0
    rows = json.loads(capsys.readouterr().out)["report"]
    assert [r["variant"] for r in rows] == ["fp32", "int8"]
    assert all(r["size_kb"] > 0 and r["ms_per_face"] > 0 and 0 <= r["tar_at_far"] <= 1 for r in rows)
    net = load_encoder(work["cnn"])
    x = net.inputs(chips[60:])
    fp32, int8 = (OnnxEncoder(tmp_path / "out" / f"{v}.onnx").embed_inputs(x) for v in ("fp32", "int8"))
    assert np.abs(fp32 - net.embed_inputs(x)).max() < 1e-4
    assert np.min(np.sum(int8 * fp32, axis=1)) > 0.95  # cosine of int8 to fp32, every face
    status = main(["export", "--face", "--model", str(work["dlib"]), "--out", str(tmp_path / "dlib")])
    err = capsys.readouterr().err
    assert status == 2 and "dlib's ResNet backbone" in err and err.count("\n") == 1
