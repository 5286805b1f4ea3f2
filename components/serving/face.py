"""Face routes: `cs230 face embed`, `verify` and `identify` over HTTP, with the same records.

    POST /v1/face/embed      an image (raw body or multipart field `file`)  -> {"file", "faces"}
    POST /v1/face/verify     two images (multipart fields `a` and `b`)      -> {"a", "b", "distance", "p_same", "same"}
    POST /v1/face/identify   an image, against the gallery of `cs230 serve --face-index DIR`
                                                                            -> {"file", "identity", "distance"}

Query parameters: `cropped=true` (the image is a face already: no detection) and, for verify
and identify, `threshold=` (else the model's own). An image over serve.max_image_pixels is
refused (413) from its header; an unreadable one is 400; one without a face (or, for verify
and identify, with several) is 422. The gallery was enrolled with one encoder: when the
served champion is another (a hot swap), identify answers 409 until it is enrolled again.
"""
from __future__ import annotations

import threading

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from components.face_commands import FaceInputError, embed_file, identify_file, one_face, verify_record
from components.serving.day_night import check_pixels, receive_image
from components.serving.inputs import ServeError, Upload, loaded_model, model_headers, receive_multipart_fields
from components.vision.images import ImageReadError

KIND = "face"
router = APIRouter(prefix=f"/v1/{KIND}")
_gallery_lock = threading.Lock()


def _cropped(request: Request) -> bool:
    text = request.query_params.get("cropped", "false").lower()
    if text not in ("true", "1", "false", "0", ""):
        raise ServeError(422, f"cropped must be true or false, got {text!r}")
    return text in ("true", "1")


def _threshold(request: Request) -> float | None:
    text = request.query_params.get("threshold")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 2.0:
        raise ServeError(422, f"threshold must be a distance in (0, 2], got {text!r}")
    return value


def _checked(upload: Upload, max_pixels: int, work):
    """work(path) of an upload, its problems as 4xx errors that name the upload, not a temp path."""
    check_pixels(upload, max_pixels)
    try:
        return work(upload.path)
    except ImageReadError as exc:
        raise ServeError(400, exc.reason.replace(str(upload.path), upload.name)) from None
    except FaceInputError as exc:
        raise ServeError(422, f"{upload.name}: {exc}") from None


async def _one_image(request: Request, loaded, work) -> JSONResponse:
    """Receive one image, run work(encoder, path, cropped) -> record in a worker thread."""
    state, cropped = request.app.state, _cropped(request)
    upload = await receive_image(request, state.config.limits.max_body_bytes)
    try:
        record = await anyio.to_thread.run_sync(
            _checked, upload, state.config.limits.max_image_pixels,
            lambda path: work(loaded.model, path, cropped), limiter=state.limiter)
    finally:
        upload.path.unlink(missing_ok=True)
    return JSONResponse({"file": upload.name, **record}, headers=model_headers(loaded))


@router.post("/embed")
async def embed(request: Request) -> JSONResponse:
    return await _one_image(request, loaded_model(request.app.state, KIND), embed_file)


@router.post("/verify")
async def verify(request: Request) -> JSONResponse:
    state = request.app.state
    loaded, cropped = loaded_model(state, KIND), _cropped(request)
    threshold = _threshold(request)
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise ServeError(415, "send the two images as multipart/form-data, in the fields 'a' and 'b'")
    uploads = await receive_multipart_fields(request, state.config.limits.max_body_bytes, ("a", "b"), "image")

    def compare() -> dict:
        a, b = (_checked(uploads[f], state.config.limits.max_image_pixels,
                         lambda path: one_face(loaded.model, path, cropped)) for f in ("a", "b"))
        return verify_record(loaded.model, a, b, threshold)

    try:
        record = await anyio.to_thread.run_sync(compare, limiter=state.limiter)
    finally:
        for upload in uploads.values():
            upload.path.unlink(missing_ok=True)
    return JSONResponse({"a": uploads["a"].name, "b": uploads["b"].name, **record}, headers=model_headers(loaded))


def gallery(state, encoder):
    """The served gallery (loaded once), if it was enrolled with `encoder`; else ServeError."""
    from components.face.search import Gallery, GalleryError

    if state.config.face_index is None:
        raise ServeError(404, "no gallery is served: start the server with --face-index DIR "
                         "(a gallery from `cs230 face enroll`)")
    with _gallery_lock:
        if getattr(state, "face_gallery", None) is None:
            try:
                state.face_gallery = Gallery.load(state.config.face_index)
            except GalleryError as exc:
                raise ServeError(503, str(exc)) from None
    if state.face_gallery.encoder != encoder.identity:
        raise ServeError(409, f"the gallery {state.config.face_index} was enrolled with encoder "
                         f"{state.face_gallery.encoder[:16]}, but the served model is {encoder.identity[:16]}: "
                         "enroll it again with `cs230 face enroll` and restart the server")
    return state.face_gallery


@router.post("/identify")
async def identify(request: Request) -> JSONResponse:
    threshold = _threshold(request)
    loaded = loaded_model(request.app.state, KIND)
    found = gallery(request.app.state, loaded.model)  # before the upload: a server without one answers at once
    return await _one_image(request, loaded, lambda encoder, path, cropped:
                            identify_file(encoder, found, path, cropped, threshold))
