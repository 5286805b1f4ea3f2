"""Trigger-word routes: one-shot detection on an upload, and a WebSocket stream.

Both answer with the model version a request started on (`holder.get` once, kept to the
end), through `components.detect` (upload) or the same streamer + `StreamingDetector` it
uses (stream), so outputs equal `cs230 detect` on the same audio. Each uses that version's
own detection settings (`detection_config()`: a hot-swapped champion brings its own), except
those the operator overrode (`cs230 serve --threshold ...`) or a request's `?threshold=`.
A stream ends with an error once it passes serve.max_stream_bytes or max_stream_seconds.
"""
from __future__ import annotations

import math

import anyio
import numpy as np
import soxr
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from components.audio.detection import DetectionConfig, StreamingDetector
from components.serving.inputs import (ServeError, detect_upload, loaded_model, model_headers, parse_sample_rate,
                                       receive_audio)

KIND = "trigger-word"
router = APIRouter(prefix=f"/v1/{KIND}")


def _loaded(state):
    return loaded_model(state, KIND)


def _settings(state, model, threshold: float | None = None) -> DetectionConfig:
    """The model's own detection settings, with the server's overrides, then the request's threshold."""
    overrides = {**state.config.detection_overrides, **({} if threshold is None else {"threshold": threshold})}
    return model.detection_config(**overrides)


def subprotocol_token(scope) -> str:
    """The token a WebSocket client offered as the subprotocols `bearer, <token>` ("" if none)."""
    offered = list(scope.get("subprotocols") or [])
    return offered[offered.index("bearer") + 1] if "bearer" in offered[:-1] else ""


def _threshold(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ServeError(422, f"threshold must be a finite number, got {text!r}")
    return value


@router.post("/detect")
async def detect(request: Request) -> JSONResponse:
    """{"file", "duration_s", "detections": [{"time_s", "score"}]}: `cs230 detect`'s line."""
    state = request.app.state
    threshold = _threshold(request.query_params.get("threshold"))
    loaded = _loaded(state)
    limits = state.config.limits
    upload = await receive_audio(request, limits.max_body_bytes, limits.max_audio_seconds)
    try:
        record = await anyio.to_thread.run_sync(detect_upload, loaded.model, upload,
                                                _settings(state, loaded.model, threshold),
                                                limits.max_audio_seconds, limiter=state.limiter)
    finally:
        upload.path.unlink(missing_ok=True)
    return JSONResponse(record, headers=model_headers(loaded))


class PcmStream:
    """PCM16 little-endian mono bytes, split anywhere -> detections as they happen."""

    def __init__(self, model, cfg: DetectionConfig, sample_rate: int):
        rate = model.sample_rate
        self.streamer = model.stream()  # its own state: one per connection
        self.detector = StreamingDetector(model.step_seconds, cfg)
        self.resampler = (soxr.ResampleStream(sample_rate, rate, 1, dtype="float32", quality="HQ")
                          if sample_rate != rate else None)  # as detect.stream_audio does
        self.sample_rate, self.samples, self.bytes, self._odd = sample_rate, 0, 0, b""

    def feed(self, data: bytes) -> list[dict]:
        self.bytes += len(data)
        data = self._odd + data
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]  # half a sample waits for the next message
        x = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / 32768.0  # as libsndfile
        self.samples += len(x)
        return self._detect(self.resampler.resample_chunk(x) if self.resampler else x)

    def finish(self) -> list[dict]:
        if self._odd:
            raise ServeError(400, "truncated PCM: the stream ended inside a 16-bit sample")
        return self._detect(self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                            if self.resampler else np.zeros(0, np.float32))

    def _detect(self, x: np.ndarray) -> list[dict]:
        if len(x) == 0:
            return []
        found = self.detector.process(self.streamer.process(x))
        return [{"time_s": round(d.time_s, 3), "score": round(d.score, 3)} for d in found]


@router.websocket("/stream")
async def stream(ws: WebSocket) -> None:
    """Binary messages: PCM16 LE mono at ?sample_rate=. Pushes {"time_s", "score"} per
    detection. A text message "end" flushes, answers {"end": true, "duration_s"} and closes.
    Over a limit (one message, the session's bytes or seconds): {"error"}, then close 1009."""
    state = ws.app.state
    try:
        rate = parse_sample_rate(ws.query_params.get("sample_rate"))
    except ServeError as exc:
        return await deny(ws, exc.status, exc.message)
    try:
        loaded = _loaded(state)
    except ServeError as exc:
        return await deny(ws, exc.status, exc.message)
    pcm = PcmStream(loaded.model, _settings(state, loaded.model), rate)
    await ws.accept(subprotocol="bearer" if subprotocol_token(ws.scope) else None,  # a client must get one back
                    headers=[(k.lower().encode(), v.encode()) for k, v in model_headers(loaded).items()])
    limits = state.config.limits
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                check_stream_limits(pcm, len(message["bytes"]), limits)
                found = await anyio.to_thread.run_sync(pcm.feed, message["bytes"], limiter=state.limiter)
            elif (message.get("text") or "").strip() == "end":
                for d in await anyio.to_thread.run_sync(pcm.finish, limiter=state.limiter):
                    await ws.send_json(d)
                await ws.send_json({"end": True, "duration_s": round(pcm.samples / rate, 3)})
                return await ws.close(1000)
            else:
                raise ServeError(400, 'send binary PCM16 messages, then the text "end"')
            for d in found:
                await ws.send_json(d)
    except ServeError as exc:
        await ws.send_json({"error": exc.message})
        await ws.close(1003 if exc.status == 400 else 1009, exc.message[:120])
    except WebSocketDisconnect:
        return


def check_stream_limits(pcm: PcmStream, size: int, limits) -> None:
    """ServeError 413 before a message of `size` bytes takes the stream past a limit."""
    if size > limits.max_body_bytes:
        raise ServeError(413, f"message over the limit of {limits.max_body_bytes} bytes")
    if pcm.bytes + size > limits.max_stream_bytes:
        raise ServeError(413, f"stream over the limit of {limits.max_stream_bytes} bytes (serve.max_stream_bytes)")
    seconds = (pcm.bytes + size) // 2 / pcm.sample_rate
    if seconds > limits.max_stream_seconds:
        raise ServeError(413, f"stream over the limit of {limits.max_stream_seconds:g} s of audio "
                         "(serve.max_stream_seconds)")


async def deny(ws: WebSocket, status: int, message: str) -> None:
    """Refuse a WebSocket before accepting it: an HTTP status + JSON error where the server
    supports it (uvicorn does), else close code 1008 with the message as reason."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"error": message}, status_code=status))
    else:
        await ws.close(1008, message[:120])
