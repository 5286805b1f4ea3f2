"""Day-night route: POST /v1/day-night/classify, an image in, `cs230 classify`'s record out.

The image is the raw body (Content-Type image/png, image/jpeg, image/webp, image/bmp,
image/gif, image/tiff or application/octet-stream) or the multipart field `file`; any size,
resized as `cs230 classify` resizes it. The answer names the model version that scored it.
"""
from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from components.classify import classify_images
from components.serving.inputs import (ServeError, Upload, loaded_model, model_headers, receive_multipart,
                                       receive_raw)
from components.vision.images import ImageReadError, load_image

KIND = "day-night"
IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif", "image/tiff",
               "application/octet-stream"}
router = APIRouter(prefix=f"/v1/{KIND}")


def classify_upload(model, upload: Upload) -> dict:
    """{"file", "p_night", "label"} of the upload (blocking: run it in a worker thread)."""
    try:
        image = load_image(upload.path, model.cfg.image_size)
    except ImageReadError as exc:
        raise ServeError(400, exc.reason.replace(str(upload.path), upload.name)) from None  # no temp paths
    return {"file": upload.name, **classify_images(model, image[None])[0]}


@router.post("/classify")
async def classify(request: Request) -> JSONResponse:
    state = request.app.state
    loaded = loaded_model(state, KIND)
    limit = state.config.limits.max_body_bytes
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media == "multipart/form-data":
        upload = await receive_multipart(request, limit, what="image")
    elif media in IMAGE_TYPES:
        upload = await receive_raw(request, limit, ".image", what="image")
    else:
        what = f"Content-Type {media!r}" if media else "no Content-Type"
        raise ServeError(415, f"unsupported {what}: send an image as the body ({', '.join(sorted(IMAGE_TYPES))}) "
                         "or in the multipart field 'file'")
    try:
        record = await anyio.to_thread.run_sync(classify_upload, loaded.model, upload, limiter=state.limiter)
    finally:
        upload.path.unlink(missing_ok=True)
    return JSONResponse(record, headers=model_headers(loaded))
