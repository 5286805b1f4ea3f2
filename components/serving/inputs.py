"""Request bodies -> an audio file on disk that `components.detect` reads, with the limits.

Accepted: a WAV/FLAC file (multipart field `file`, or the raw body as audio/wav or
audio/flac), or raw 16-bit little-endian mono PCM (application/octet-stream or audio/L16)
with `?sample_rate=`. PCM is written behind a WAV header as it arrives, so every input goes
through the same reader (`detect_file`) and gives the same JSON as `cs230 detect`.

Every refusal is a `ServeError(status, message)`: the app answers `{"error": message}`.
The byte limit is counted while the body arrives, before anything is decoded; the duration
limit counts the samples decoded (or received, for PCM), never what a file header claims.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from components.audio.audio_io import AudioReadError
from components.detect import AudioTooLong, detect_file

FILE_TYPES = {"audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/vnd.wave": ".wav",
              "audio/flac": ".flac", "audio/x-flac": ".flac"}
PCM_TYPES = {"application/octet-stream", "audio/l16"}
SAMPLE_RATES = (8000, 192000)  # PCM rates accepted: telephone to studio; resampled to the model's
ACCEPTED = ("a WAV/FLAC file (multipart field 'file', or the body as audio/wav or audio/flac) or 16-bit "
            "little-endian mono PCM (application/octet-stream or audio/L16) with ?sample_rate=")


class ServeError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Upload:
    name: str  # the uploaded file's name, or "upload" for a raw body
    path: Path  # a temporary file the caller removes


def parse_sample_rate(text: str | None, required: bool = True) -> int | None:
    if text is None or text == "":
        if required:
            raise ServeError(422, "sample_rate query parameter is required for raw PCM, e.g. ?sample_rate=16000")
        return None
    low, high = SAMPLE_RATES
    if not text.isdigit() or not low <= int(text) <= high:
        raise ServeError(422, f"sample_rate must be an integer from {low} to {high} Hz, got {text!r}")
    return int(text)


def loaded_model(state, kind: str):
    """This request's model, whatever a reload does meanwhile (503 when none is loaded)."""
    try:
        return state.holder.get(kind)
    except KeyError:
        raise ServeError(503, f"no {kind} model is loaded; see /healthz") from None


def model_headers(loaded) -> dict:
    """Which version answered (headers are latin-1: other characters of a path are escaped)."""
    values = {"X-Model": loaded.name, "X-Model-Version": str(loaded.version or ""), "X-Model-Source": loaded.source}
    return {k: v.encode("ascii", "backslashreplace").decode() for k, v in values.items()}


async def limited_body(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body's chunks; 413 as soon as the declared or received size passes `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ServeError(413, f"request body of {int(declared)} bytes is over the limit of {limit} bytes")
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise ServeError(413, f"request body is over the limit of {limit} bytes")
            yield chunk
    except ClientDisconnect:  # nobody is left to read the answer; it is only logged
        raise ServeError(400, "the client closed the connection before the body ended") from None


def _wav_header(rate: int, data_bytes: int) -> bytes:
    """44-byte RIFF/WAVE header of 16-bit mono PCM."""
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", data_bytes))


async def receive_audio(request: Request, max_bytes: int, max_seconds: float) -> Upload:
    """The request's audio in a temporary file; ServeError (4xx) when it cannot be one."""
    media, _, rest = request.headers.get("content-type", "").partition(";")
    media = media.strip().lower()
    ctype_params = dict(p.strip().lower().partition("=")[::2] for p in rest.split(";") if "=" in p)
    if media == "multipart/form-data":
        return await receive_multipart(request, max_bytes)
    if media in FILE_TYPES:
        return await receive_raw(request, max_bytes, FILE_TYPES[media], header=None)
    if media in PCM_TYPES:
        rate = parse_sample_rate(request.query_params.get("sample_rate") or ctype_params.get("rate"))
        if ctype_params.get("channels", "1") != "1":
            raise ServeError(415, "raw PCM must be mono (channels=1); send a WAV/FLAC file for more channels")
        upload = await receive_raw(request, max_bytes, ".wav", header=rate)
        data_bytes = upload.path.stat().st_size - 44
        if data_bytes % 2 or data_bytes / 2 / rate > max_seconds:
            upload.path.unlink()
            if data_bytes % 2:
                raise ServeError(400, f"truncated PCM: {data_bytes} bytes is not a whole number of 16-bit samples")
            raise ServeError(413, f"audio is {data_bytes / 2 / rate:.1f} s long; the limit is {max_seconds:g} s")
        with open(upload.path, "r+b") as f:  # now the sizes are known
            f.write(_wav_header(rate, data_bytes))
        return upload
    what = f"Content-Type {media!r}" if media else "no Content-Type"
    raise ServeError(415, f"unsupported {what}: send {ACCEPTED}")


def _temp_file(suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="cs230-serve-", suffix=suffix)
    os.close(fd)
    return Path(name)


async def receive_raw(request: Request, max_bytes: int, suffix: str, header: int | None = None,
                      what: str = "audio") -> Upload:
    """The raw body in a temporary file (with a WAV header to fill in, when `header` is a rate)."""
    path = _temp_file(suffix)
    try:
        size = 0
        with open(path, "wb") as out:
            if header is not None:
                out.write(_wav_header(header, 0))  # placeholder sizes, rewritten once known
            async for chunk in limited_body(request, max_bytes):
                out.write(chunk)
                size += len(chunk)
        if size == 0:
            raise ServeError(400, f"empty body: no {what}")
        return Upload("upload", path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


async def _form(request: Request, max_bytes: int):
    parser = MultiPartParser(request.headers, limited_body(request, max_bytes), max_files=4, max_fields=16)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise ServeError(400, f"malformed multipart body ({exc.message})") from None


async def _save_part(part, what: str) -> Upload:
    """One multipart file part in a temporary file."""
    name = part.filename or "upload"
    suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in (".wav", ".flac") else ".audio"
    path = _temp_file(suffix)
    try:
        with open(path, "wb") as out:
            await run_in_threadpool(shutil.copyfileobj, part.file, out)
        if path.stat().st_size == 0:
            raise ServeError(400, f"empty file {name!r}: no {what}")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Upload(name, path)


async def receive_multipart(request: Request, max_bytes: int, what: str = "audio") -> Upload:
    """The multipart body's field `file` (or its first file part) in a temporary file."""
    form = await _form(request, max_bytes)
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):  # no field 'file': take the first file part
            upload = next((v for _, v in form.multi_items() if not isinstance(v, str)), None)
        if upload is None:
            raise ServeError(400, f"multipart body has no file: send the {what} in the field 'file'")
        return await _save_part(upload, what)
    finally:
        await form.close()


async def receive_multipart_fields(request: Request, max_bytes: int, fields: tuple[str, ...],
                                   what: str) -> dict[str, Upload]:
    """The multipart body's file fields `fields` (all of them), each in a temporary file."""
    form = await _form(request, max_bytes)
    saved: dict[str, Upload] = {}
    try:
        for field in fields:
            part = form.get(field)
            if part is None or isinstance(part, str):
                raise ServeError(400, f"multipart body has no file in the field {field!r}: send one {what} "
                                 f"in each of the fields {', '.join(map(repr, fields))}")
            saved[field] = await _save_part(part, what)
        return saved
    except BaseException:
        for upload in saved.values():
            upload.path.unlink(missing_ok=True)
        raise
    finally:
        await form.close()


def detect_upload(model, upload: Upload, cfg, max_seconds: float) -> dict:
    """`cs230 detect`'s record of the upload (blocking: run it in a worker thread). The duration
    limit counts samples as they are decoded: a header that understates the length gains nothing."""
    try:
        return {"file": upload.name, **detect_file(model, upload.path, cfg, max_seconds=max_seconds)}
    except AudioTooLong as exc:
        raise ServeError(413, str(exc)) from None
    except AudioReadError as exc:
        raise ServeError(400, str(exc).replace(str(upload.path), upload.name)) from None  # no temp paths
