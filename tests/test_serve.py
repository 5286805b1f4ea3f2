"""`cs230 serve` (DESIGN §6): the same JSON as `cs230 detect`, with each model's own detection
settings; every bad input a 4xx with a JSON error; the limits (decoded duration, requests in
flight, stream bytes and seconds, image pixels); the bearer token (header or subprotocol,
never the URL); atomic champion swaps under load; the WebSocket stream; and one run of the
real CLI + uvicorn on a free loopback port."""
from __future__ import annotations

import argparse
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from components import registry
from components.audio.model import load_model, save_model
from components.config import ServeParams
from components.detect import detect_file, registered_name
from components.serve import ServeConfig, create_app
from conftest import PROJECT_ROOT, classifier_config, free_port, trigger_word_model

LIMITS = ServeParams(poll_seconds=0.0, max_body_bytes=2_000_000, max_audio_seconds=60.0)
WORD = "serve test"  # registered as trigger-word-serve-test in the temporary store
NAME = registered_name("serve-test")
DETECT = "/v1/trigger-word/detect"
STREAM = "/v1/trigger-word/stream"


def tone_bursts(rate: int, seconds: float = 10.0, channels: int = 1) -> np.ndarray:
    """0.5 s tones on silence at 1, 3.5, 6 and 8.5 s: a random model tells them apart."""
    t = np.arange(int(rate * seconds)) / rate
    x = np.zeros_like(t)
    for start in (1.0, 3.5, 6.0, 8.5):
        on = (t >= start) & (t < start + 0.5)
        x[on] = 0.5 * np.sin(2 * np.pi * 440 * t[on])
    return np.stack([x * (0.8 + 0.2 * c) for c in range(channels)], axis=1).squeeze().astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("serve")
    f = {k: d / n for k, n in [("wav", "clip.wav"), ("flac", "clip.flac"), ("stereo", "stereo44k.wav"),
                               ("empty", "empty.wav"), ("truncated", "truncated.wav"), ("long", "long8k.wav")]}
    sf.write(f["wav"], tone_bursts(16000), 16000, subtype="PCM_16")
    sf.write(f["flac"], tone_bursts(16000), 16000)
    sf.write(f["stereo"], tone_bursts(44100, channels=2), 44100, subtype="PCM_16")
    sf.write(f["empty"], np.zeros(0, np.float32), 16000, subtype="PCM_16")
    f["truncated"].write_bytes(f["wav"].read_bytes()[:100_001])
    sf.write(f["long"], np.zeros(61 * 8000, np.float32), 8000, subtype="PCM_16")  # 61 s, under 1 MB
    f["dir"] = d
    return f


@pytest.fixture(scope="module")
def detectors(files) -> dict[str, Path]:
    """One tiny random model saved three times: threshold between its silence and tone
    levels ("mid"), 0.0 (fires at once: one detection per clip) and 1.01 (never fires)."""
    torch.manual_seed(0)
    model = trigger_word_model(conv_filters=16, gru_hidden=16, gru_layers=1, dropout=0.0)
    with torch.no_grad():
        model.head.weight.mul_(10)  # widen the gap between silence and tone
    model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(torch.from_numpy(tone_bursts(16000))[None]))[0].numpy()
    silence, tone = np.median(probs[15:45]), np.median(probs[60:72])
    assert abs(tone - silence) > 0.2, "test setup: the model should tell tones from silence"
    paths = {}
    for key, threshold in [("mid", float((tone + silence) / 2)), ("always", 0.0), ("never", 1.01)]:
        model.threshold = threshold
        paths[key] = files["dir"] / key / "detector.pt"
        save_model(model, paths[key])
    return paths


def expected(detector: Path, audio: Path, name: str, threshold: float | None = None) -> dict:
    """What `cs230 detect` prints for this file with this model (`--threshold` if given)."""
    model = load_model(detector)
    return {"file": name, **detect_file(model, audio, model.detection_config(threshold=threshold))}


@pytest.fixture(scope="module")
def store(detectors, tmp_path_factory):
    """A temporary sqlite MLflow store holding NAME versions 1 (mid), 2 (always), 3 (never)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous, patch = mlflow.get_tracking_uri(), pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    patch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("serve-test", artifact_location=(root / "artifacts").as_uri())
    for key in ("mid", "always", "never"):
        with mlflow.start_run(experiment_id=experiment):
            info = registry.log_detector(detectors[key])
        version = mlflow.register_model(info.model_uri, NAME).version
        tags = {"gate.frr": 0.25, "gate.fa_per_hour": 0.5, "gate.threshold": load_model(detectors[key]).threshold}
        for tag, value in tags.items():
            client.set_model_version_tag(NAME, version, tag, str(value))
    client.set_registered_model_alias(NAME, "champion", "1")
    yield uri, client
    mlflow.set_tracking_uri(previous)
    patch.undo()


@pytest.fixture(scope="module")
def client(detectors):
    """The app over the mid-threshold detector file (what `--model PATH` serves)."""
    with TestClient(create_app(ServeConfig({"trigger-word": str(detectors["mid"])}, limits=LIMITS))) as c:
        yield c


def registry_app(store, **limits) -> TestClient:
    return TestClient(create_app(ServeConfig({"trigger-word": f"models:/{NAME}@champion"}, tracking_uri=store[0],
                                             limits=LIMITS.model_copy(update=limits))))


# ------------------------------------------------------------------ detection = cs230 detect

@pytest.mark.parametrize("form", ["multipart", "wav", "flac", "stereo44k", "pcm", "l16"])
def test_detect_returns_the_cs230_detect_record(client, files, detectors, form):
    audio = files["stereo" if form == "stereo44k" else "flac" if form == "flac" else "wav"]
    pcm = sf.read(files["wav"], dtype="int16")[0].astype("<i2").tobytes()
    request = {"multipart": dict(files={"file": ("clip.wav", audio.read_bytes(), "audio/wav")}),
               "wav": dict(content=audio.read_bytes(), headers={"Content-Type": "audio/wav"}),
               "flac": dict(content=audio.read_bytes(), headers={"Content-Type": "audio/flac"}),
               "stereo44k": dict(files={"file": ("stereo44k.wav", audio.read_bytes())}),
               "pcm": dict(content=pcm, params={"sample_rate": 16000},
                           headers={"Content-Type": "application/octet-stream"}),
               "l16": dict(content=pcm, headers={"Content-Type": "audio/L16; rate=16000"})}[form]
    r = client.post(DETECT, **request)
    assert r.status_code == 200, r.text
    name = {"multipart": "clip.wav", "stereo44k": "stereo44k.wav"}.get(form, "upload")
    assert r.json() == expected(detectors["mid"], audio, name)
    assert len(r.json()["detections"]) >= 2 and r.json()["duration_s"] == 10.0


def test_threshold_zero_guarantees_a_detection(client, files, detectors):
    r = client.post(DETECT, params={"threshold": "0"}, files={"file": ("clip.wav", files["wav"].read_bytes())})
    assert r.status_code == 200 and r.json()["detections"]
    assert r.json() == expected(detectors["mid"], files["wav"], "clip.wav", threshold=0.0)


# ------------------------------------------------------------------------- bad input: 4xx

def _bad_requests(files) -> list[tuple[str, str, dict, int, str]]:
    wav = files["wav"].read_bytes()
    octet, wav_type = {"Content-Type": "application/octet-stream"}, {"Content-Type": "audio/wav"}
    return [
        ("text body", "POST", dict(content=b"hi", headers={"Content-Type": "text/plain"}), 415, "unsupported Content-Type"),
        ("json body", "POST", dict(json={"audio": [0, 1]}), 415, "unsupported Content-Type"),
        ("no content type", "POST", dict(content=b"RIFF"), 415, "no Content-Type"),
        ("text as wav", "POST", dict(content=b"not a wav file at all", headers=wav_type), 400, "not readable audio"),
        ("text upload", "POST", dict(files={"file": ("notes.wav", b"hello there")}), 400, "not readable audio"),
        ("empty body", "POST", dict(content=b"", headers=wav_type), 400, "empty body"),
        ("empty upload", "POST", dict(files={"file": ("clip.wav", b"")}), 400, "empty file"),
        ("no file part", "POST", dict(headers={"Content-Type": "multipart/form-data; boundary=zz"},
                                      content=b'--zz\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--zz--\r\n'),
         400, "no file"),
        ("wav without samples", "POST", dict(files={"file": ("e.wav", files["empty"].read_bytes())}), 400, "empty audio"),
        ("truncated wav", "POST", dict(files={"file": ("t.wav", files["truncated"].read_bytes())}), 400, "truncated"),
        ("odd pcm", "POST", dict(content=b"\x00" * 3201, params={"sample_rate": 16000}, headers=octet), 400, "truncated PCM"),
        ("too long", "POST", dict(files={"file": ("long.wav", files["long"].read_bytes())}), 413, "limit is 60 s"),
        ("too long pcm", "POST", dict(content=b"\x00" * 2 * 8000 * 61, params={"sample_rate": 8000}, headers=octet),
         413, "limit is 60 s"),
        ("too many bytes", "POST", dict(content=wav * 7, headers=wav_type), 413, "over the limit"),
        ("too many bytes, chunked", "POST", dict(content=iter([wav] * 7), headers=wav_type), 413, "over the limit"),
        ("no sample_rate", "POST", dict(content=b"\x00\x00", headers=octet), 422, "sample_rate"),
        *[(f"sample_rate={rate}", "POST", dict(content=b"\x00\x00", params={"sample_rate": rate}, headers=octet),
           422, "sample_rate") for rate in ("fast", 0, 10**7, -16000, "16000.5")],
        ("nan threshold", "POST", dict(params={"threshold": "nan"}, files={"file": ("c.wav", wav)}), 422, "threshold"),
        ("stereo pcm", "POST", dict(content=b"\x00" * 4, headers={"Content-Type": "audio/L16; rate=16000; channels=2"}),
         415, "mono"),
        ("wrong method", "GET", {}, 405, "Method Not Allowed"),
    ]


def test_every_bad_input_is_a_4xx_with_a_json_error(client, files):
    for what, method, request, status, phrase in _bad_requests(files):
        r = client.request(method, DETECT, **request)
        assert r.status_code == status and phrase in r.json()["error"], (what, r.status_code, r.text)
    assert client.get("/healthz").json()["status"] == "ok"  # and the server is still up


def test_unknown_model_and_route_are_404(client):
    r = client.post("/v1/day-night/detect", content=b"x", headers={"Content-Type": "audio/wav"})
    assert r.status_code == 404 and "unknown model 'day-night'" in r.json()["error"]
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json() == {"error": "no route GET /v1/nothing-here"}


def test_a_lying_header_does_not_get_past_the_duration_cap(client, tmp_path):
    """A FLAC whose header leaves its length unknown holds 120 s: the cap counts decoded samples."""
    flac = tmp_path / "unknown-length.flac"
    sf.write(flac, np.tile(tone_bursts(16000), 12), 16000)
    data = bytearray(flac.read_bytes())
    data[21] &= 0xF0  # STREAMINFO total_samples (36 bits) = 0: "unknown"
    data[22:26] = bytes(4)
    r = client.post(DETECT, files={"file": ("unknown-length.flac", bytes(data))})
    assert r.status_code == 413 and "the limit is 60 s" in r.json()["error"], r.text


# ------------------------------------------------------------------------------ limits

def test_requests_over_the_concurrency_limit_get_503(detectors, files):
    """With one slot, an open stream holds it: a detect request is refused at once with a JSON
    503, /healthz still answers, and the slot is free again when the stream ends."""
    config = ServeConfig({"trigger-word": str(detectors["mid"])}, limits=LIMITS.model_copy(
        update={"max_concurrent_requests": 1}))
    body = {"file": ("clip.wav", files["wav"].read_bytes())}
    with TestClient(create_app(config)) as c:
        with c.websocket_connect(f"{STREAM}?sample_rate=16000") as ws:
            busy = c.post(DETECT, files=body)
            assert busy.status_code == 503 and "max_concurrent_requests" in busy.json()["error"]
            with pytest.raises(WebSocketDenialResponse) as denied:
                with c.websocket_connect(f"{STREAM}?sample_rate=16000"):
                    pass
            assert denied.value.status_code == 503
            assert c.get("/healthz").status_code == 200
            ws.send_text("end")
            assert ws.receive_json()["end"]
        assert c.post(DETECT, files=body).status_code == 200


@pytest.mark.parametrize("limit, phrase", [({"max_stream_bytes": 100_000}, "100000 bytes"),
                                           ({"max_stream_seconds": 2.0}, "2 s of audio")])
def test_a_stream_ends_at_its_byte_or_duration_limit(detectors, files, limit, phrase):
    config = ServeConfig({"trigger-word": str(detectors["mid"])}, limits=LIMITS.model_copy(update=limit))
    pcm = sf.read(files["wav"], dtype="int16")[0].astype("<i2").tobytes()  # 320 kB, 10 s
    with TestClient(create_app(config)) as c, c.websocket_connect(f"{STREAM}?sample_rate=16000") as ws:
        messages = []
        for i in range(0, len(pcm), 16000):  # 0.5 s per message
            ws.send_bytes(pcm[i: i + 16000])
            if i >= 150_000:  # both limits are passed by now: the error is waiting
                break
        while "error" not in (messages[-1] if messages else {}):
            messages.append(ws.receive_json())
        assert phrase in messages[-1]["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1009


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with no pixels behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_images_over_the_pixel_limit_are_refused_before_decoding(detectors, tmp_path):
    from PIL import Image

    from components.vision.model import build_classifier, save_classifier

    save_classifier(build_classifier(classifier_config(kind="mlp", hidden=(8,)), seed=0), tmp_path / "classifier.pt")
    config = ServeConfig({"day-night": str(tmp_path / "classifier.pt")},
                         limits=LIMITS.model_copy(update={"max_image_pixels": 1_000_000}))
    Image.new("RGB", (1001, 1000)).save(tmp_path / "big.png")  # a few kB of PNG, 1 MP + 1000
    Image.new("RGB", (1000, 1000)).save(tmp_path / "fits.png")
    with TestClient(create_app(config)) as c:
        def post(data: bytes):
            return c.post("/v1/day-night/classify", content=data, headers={"Content-Type": "image/png"})
        big, fits = post((tmp_path / "big.png").read_bytes()), post((tmp_path / "fits.png").read_bytes())
        assert big.status_code == 413 and "1001x1000" in big.json()["error"], big.text
        assert fits.status_code == 200
        for size in ((5_000, 5_000), (100_000, 20_000)):  # 25 MP: ours; 2 GP: Pillow's bomb check (179 MP)
            r = post(_png_header_only(*size))
            assert r.status_code == 413 and "max_image_pixels" in r.json()["error"], r.text


# ------------------------------------------------------- settings that travel with the model

def test_each_served_model_brings_its_own_detection_settings(detectors, files, tmp_path):
    """A detector saved with a 9 s refractory period fires once per clip in the server as in
    `cs230 detect`; an operator override applies to it; a hot-swapped file brings its own."""
    model = load_model(detectors["mid"])
    model.set_detection_config(model.detection_config(refractory_s=9.0))
    path = tmp_path / "swap" / "detector.pt"
    save_model(model, path)
    body = {"file": ("clip.wav", files["wav"].read_bytes())}
    want = expected(path, files["wav"], "clip.wav")
    assert len(want["detections"]) == 1
    with TestClient(create_app(ServeConfig({"trigger-word": str(path)}, limits=LIMITS))) as c:
        assert c.post(DETECT, files=body).json() == want
        pcm = sf.read(files["wav"], dtype="int16")[0].astype("<i2").tobytes()
        with c.websocket_connect(f"{STREAM}?sample_rate=16000") as ws:
            assert len(_stream(ws, pcm, 32000)) == 2  # one detection, then the end
        save_model(load_model(detectors["mid"]), path)  # the next version: the default 1 s
        assert c.post("/v1/admin/reload").json()["changed"]
        assert c.post(DETECT, files=body).json() == expected(detectors["mid"], files["wav"], "clip.wav")
    save_model(model, path)
    overridden = ServeConfig({"trigger-word": str(path)}, limits=LIMITS, detection_overrides={"refractory_s": 1.0})
    with TestClient(create_app(overridden)) as c:
        assert len(c.post(DETECT, files=body).json()["detections"]) == len(expected(
            detectors["mid"], files["wav"], "clip.wav")["detections"]) > 1


# ---------------------------------------------------------------------------------- token

def test_token_guards_every_route_but_healthz(detectors, files):
    app = create_app(ServeConfig({"trigger-word": str(detectors["mid"])}, limits=LIMITS, token="s3cret"))
    good = {"Authorization": "Bearer s3cret"}
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = c.get("/v1/models", headers=headers)
            assert r.status_code == 401 and "bearer token" in r.json()["error"]
        assert c.post(DETECT, files={"file": ("c.wav", files["wav"].read_bytes())}).status_code == 401
        assert c.get("/v1/nothing", headers={}).status_code == 401  # routes are not revealed either
        assert c.get("/v1/models", headers=good).status_code == 200
        r = c.post(DETECT, headers=good, files={"file": ("c.wav", files["wav"].read_bytes())})
        assert r.status_code == 200 and r.json()["detections"]
        with pytest.raises(WebSocketDenialResponse) as denied:
            with c.websocket_connect(f"{STREAM}?sample_rate=16000"):
                pass
        assert denied.value.status_code == 401
        for bad in ({"subprotocols": ["bearer", "wrong"]}, {"subprotocols": ["s3cret"]}, {}):
            with pytest.raises(WebSocketDenialResponse) as denied:  # the URL is logged: never a token there
                with c.websocket_connect(f"{STREAM}?sample_rate=16000&token=s3cret", **bad):
                    pass
            assert denied.value.status_code == 401
        for kw, protocol in (({"headers": good}, None), ({"subprotocols": ["bearer", "s3cret"]}, "bearer")):
            with c.websocket_connect(f"{STREAM}?sample_rate=16000", **kw) as ws:
                assert ws.accepted_subprotocol == protocol  # a browser needs one of its offers back
                ws.send_text("end")
                assert ws.receive_json() == {"end": True, "duration_s": 0.0}


# ------------------------------------------------------------------------------ streaming

def _stream(ws, pcm: bytes, piece: int) -> list[dict]:
    for i in range(0, len(pcm), piece):  # odd sizes: samples split across messages
        ws.send_bytes(pcm[i: i + piece])
    ws.send_text("end")
    messages = []
    while not (messages and messages[-1].get("end")):
        messages.append(ws.receive_json())
    return messages


def test_websocket_stream_gives_the_detect_file_detections(client, files, detectors):
    pcm = sf.read(files["wav"], dtype="int16")[0].astype("<i2").tobytes()
    with client.websocket_connect(f"{STREAM}?sample_rate=16000") as ws:
        messages = _stream(ws, pcm, 3001)
    assert messages[-1] == {"end": True, "duration_s": 10.0}
    want = expected(detectors["mid"], files["wav"], "clip.wav")["detections"]
    got = messages[:-1]
    assert len(want) >= 2 and [d["time_s"] for d in got] == [d["time_s"] for d in want]
    np.testing.assert_allclose([d["score"] for d in got], [d["score"] for d in want], atol=2e-3)  # chunking: ~1e-5


def test_websocket_bad_input(client):
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(f"{STREAM}?sample_rate=abc"):
            pass
    assert denied.value.status_code == 422 and "sample_rate" in denied.value.json()["error"]
    with client.websocket_connect(f"{STREAM}?sample_rate=8000") as ws:
        ws.send_bytes(b"\x00" * 801)
        ws.send_text("end")
        assert "truncated PCM" in ws.receive_json()["error"]
    with client.websocket_connect(f"{STREAM}?sample_rate=8000") as ws:
        ws.send_text("hello")
        assert "binary PCM16" in ws.receive_json()["error"]
    assert client.get("/healthz").status_code == 200


# ------------------------------------------------------------------ registry and swapping

def test_models_lists_the_champion_with_its_metrics(store):
    store[1].set_registered_model_alias(NAME, "champion", "1")
    with registry_app(store) as c:
        [m] = c.get("/v1/models").json()["models"]
        health = c.get("/healthz").json()
    assert (m["kind"], m["name"], m["version"], m["alias"], m["source"]) == (
        "trigger-word", NAME, "1", "champion", f"models:/{NAME}/1")
    assert m["metrics"]["frr"] == 0.25 and m["metrics"]["fa_per_hour"] == 0.5 and 0 < m["metrics"]["threshold"] < 1
    assert health["status"] == "ok" and health["models"]["trigger-word"]["version"] == "1"


def test_champion_swap_under_load_is_atomic(store, files, detectors):
    """Requests in flight while the alias flips 2 <-> 3 and reloads run: every answer is 200
    and wholly one version's (v2 fires once per clip, v3 never), as its header says."""
    want = {"2": expected(detectors["always"], files["wav"], "clip.wav"),
            "3": expected(detectors["never"], files["wav"], "clip.wav")}
    assert want["2"]["detections"] and not want["3"]["detections"]
    store[1].set_registered_model_alias(NAME, "champion", "2")
    answers, done, body = [], threading.Event(), files["wav"].read_bytes()

    def fire():
        while not done.is_set():
            r = c.post(DETECT, files={"file": ("clip.wav", body)})
            answers.append((r.status_code, r.headers.get("X-Model-Version"), r.json()))

    with registry_app(store) as c:
        threads = [threading.Thread(target=fire) for _ in range(3)]
        for t in threads:
            t.start()
        for version in ["3", "2", "3", "2", "3"]:
            time.sleep(0.3)
            store[1].set_registered_model_alias(NAME, "champion", version)
            r = c.post("/v1/admin/reload")
            assert r.status_code == 200 and r.json()["changed"]["trigger-word"].endswith(f"/{version}")
        time.sleep(0.3)
        done.set()
        for t in threads:
            t.join()
    assert answers and {a[1] for a in answers} == {"2", "3"}
    for status, version, record in answers:
        assert status == 200 and record == want[version]


def test_the_poll_picks_up_a_new_champion_without_a_restart(store):
    store[1].set_registered_model_alias(NAME, "champion", "1")
    with registry_app(store, poll_seconds=0.2) as c:
        assert c.get("/v1/models").json()["models"][0]["version"] == "1"
        store[1].set_registered_model_alias(NAME, "champion", "3")
        deadline = time.time() + 20
        while c.get("/v1/models").json()["models"][0]["version"] != "3":
            assert time.time() < deadline, "the poll did not switch to version 3"
            time.sleep(0.2)
        store[1].delete_registered_model_alias(NAME, "champion")  # the alias vanishes: keep serving
        assert c.post("/v1/admin/reload").json()["errors"]["trigger-word"]
        assert c.get("/healthz").json()["models"]["trigger-word"]["version"] == "3"


def test_cli_without_a_champion_exits_2_with_a_hint(store, monkeypatch, capsys):
    from pipelines import cli

    monkeypatch.chdir(PROJECT_ROOT)
    args = argparse.Namespace(word="nobody registered", host=None, port=None, replicas=None, model=None,
                              classifier=None, face=None, face_index=None, style=None, token=None, ray=False, invocation_dir=PROJECT_ROOT)
    assert cli.cmd_serve(args) == 2
    assert "no champion registered yet" in capsys.readouterr().err


# ------------------------------------------------------- the real thing: CLI + uvicorn

def test_real_server_on_loopback(store, files, detectors, tmp_path):
    from websockets.sync.client import connect

    store[1].set_registered_model_alias(NAME, "champion", "1")
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store[0], "CS230_SERVE_TOKEN": "tok"}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--word", WORD, "--port", str(port)],
                            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer tok"}
    try:
        deadline = time.time() + 90
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.3)
        assert health.json()["models"]["trigger-word"]["version"] == "1"  # healthz: no token needed
        body = files["wav"].read_bytes()
        assert httpx.post(f"{base}{DETECT}", files={"file": ("clip.wav", body)}).status_code == 401
        r = httpx.post(f"{base}{DETECT}", files={"file": ("clip.wav", body)}, headers=auth, timeout=30)
        assert r.status_code == 200 and r.json() == expected(detectors["mid"], files["wav"], "clip.wav")
        big = httpx.post(f"{base}{DETECT}", content=iter([body] * 60), headers={**auth, "Content-Type": "audio/wav"})
        assert big.status_code == 413 and "over the limit" in big.json()["error"]  # 19 MB > 16 MB, chunked
        with connect(f"ws://127.0.0.1:{port}{STREAM}?sample_rate=16000", additional_headers=auth) as ws:
            pcm = sf.read(files["wav"], dtype="int16")[0].astype("<i2").tobytes()
            for i in range(0, len(pcm), 6400):
                ws.send(pcm[i: i + 6400])
            ws.send("end")
            import json
            messages = [json.loads(m) for m in ws]
        assert messages[-1] == {"end": True, "duration_s": 10.0}
        assert [m["time_s"] for m in messages[:-1]] == [d["time_s"] for d in r.json()["detections"]]
        with connect(f"ws://127.0.0.1:{port}{STREAM}?sample_rate=16000", subprotocols=["bearer", "tok"]) as ws:
            assert ws.subprotocol == "bearer"  # what a browser's WebSocket(url, ["bearer", token]) needs
            ws.send("end")
            assert json.loads(ws.recv()) == {"end": True, "duration_s": 0.0}
        store[1].set_registered_model_alias(NAME, "champion", "3")
        assert httpx.post(f"{base}/v1/admin/reload", headers=auth, timeout=30).json()["changed"]
        r = httpx.post(f"{base}{DETECT}", files={"file": ("clip.wav", body)}, headers=auth, timeout=30)
        assert r.headers["X-Model-Version"] == "3" and r.json()["detections"] == []
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


@pytest.mark.skipif(os.environ.get("CS230_TEST_RAY_SERVE") != "1",
                    reason="starts local Ray (about a minute on 2 cores); set CS230_TEST_RAY_SERVE=1")
def test_ray_serve_replicas_answer_like_uvicorn(files, detectors, tmp_path):
    port = free_port()
    log = open(tmp_path / "ray.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--ray", "--replicas", "2",
                             "--model", str(detectors["mid"]), "--port", str(port)],
                            cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "ray.log").read_text()[-3000:]
            time.sleep(1)
        for _ in range(4):  # requests spread over both replicas: each loaded the same detector
            r = httpx.post(f"{base}{DETECT}", files={"file": ("clip.wav", files["wav"].read_bytes())}, timeout=60)
            assert r.status_code == 200 and r.json() == expected(detectors["mid"], files["wav"], "clip.wav")
        r = httpx.post(f"{base}{DETECT}", content=b"hello", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and "error" in r.json()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0


def test_day_night_route_answers_like_cs230_classify(detectors, tmp_path):
    """Both kinds on one server: an image (raw body or multipart) gets `cs230 classify`'s
    record from the day-night classifier; a broken image or a wrong type is a 4xx."""
    from PIL import Image

    from components.classify import classify_inputs, iter_inputs
    from components.vision.model import build_classifier, save_classifier

    model = build_classifier(classifier_config(kind="mlp", hidden=(8,)), seed=0)
    model.temperature, model.threshold = 1.5, 0.4
    save_classifier(model, tmp_path / "classifier.pt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    expected_record = next(classify_inputs(model, iter_inputs(["photo.png"], tmp_path)))
    config = ServeConfig({"trigger-word": str(detectors["mid"]), "day-night": str(tmp_path / "classifier.pt")},
                         limits=LIMITS)
    with TestClient(create_app(config)) as c:
        png = (tmp_path / "photo.png").read_bytes()
        raw = c.post("/v1/day-night/classify", content=png, headers={"Content-Type": "image/png"})
        form = c.post("/v1/day-night/classify", files={"file": ("photo.png", png, "image/png")})
        assert raw.status_code == form.status_code == 200
        assert form.json() == expected_record
        assert raw.json() == {**expected_record, "file": "upload"} and raw.headers["X-Model"] == "classifier.pt"
        broken = c.post("/v1/day-night/classify", content=b"junk", headers={"Content-Type": "image/jpeg"})
        assert broken.status_code == 400 and "error" in broken.json()
        wrong = c.post("/v1/day-night/classify", content=b"x", headers={"Content-Type": "text/plain"})
        assert wrong.status_code == 415
        assert {m["kind"] for m in c.get("/v1/models").json()["models"]} == {"trigger-word", "day-night"}
        assert c.post(DETECT, content=b"", headers={"Content-Type": "audio/wav"}).status_code == 400
