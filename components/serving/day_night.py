"""Day-night route: POST /v1/day-night/classify, an image in, `cs230 classify`'s record out.

The image is the raw body (Content-Type image/png, image/jpeg, image/webp, image/bmp,
image/gif, image/tiff or application/octet-stream) or the multipart field `file`, resized as
`cs230 classify` resizes it. The answer names the model version that scored it. An image of
more than serve.max_image_pixels is refused (413) from its header, before any pixel is decoded:
a small compressed file can hold a huge image (a decompression bomb).
"""
from __future__ import annotations

import anyio
from PIL import Image
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


def check_pixels(upload: Upload, max_pixels: int) -> None:
    """ServeError 413 when the header's width x height is over `max_pixels`. `Image.open` reads
    only the header; a file it cannot open is left for `load_image` to explain."""
    too_big = f"over the limit of {max_pixels} pixels (serve.max_image_pixels)"
    try:
        with Image.open(upload.path) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # over Pillow's own ceiling (2 x Image.MAX_IMAGE_PIXELS)
        raise ServeError(413, f"image is {too_big}") from None
    except Exception:  # noqa: BLE001 -- not an image: load_image says why, in cs230 classify's words
        return
    if width * height > max_pixels:
        raise ServeError(413, f"image of {width}x{height} = {width * height} pixels is {too_big}")


def classify_upload(model, upload: Upload, max_pixels: int) -> dict:
    """{"file", "p_night", "label"} of the upload (blocking: run it in a worker thread)."""
    check_pixels(upload, max_pixels)
    try:
        image = load_image(upload.path, model.cfg.image_size)
    except ImageReadError as exc:
        raise ServeError(400, exc.reason.replace(str(upload.path), upload.name)) from None  # no temp paths
    return {"file": upload.name, **classify_images(model, image[None])[0]}


async def receive_image(request: Request, limit: int) -> Upload:
    """The request's image (raw body of an image type, or the multipart field `file`) in a temporary file."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await receive_multipart(request, limit, what="image")
    if media in IMAGE_TYPES:
        return await receive_raw(request, limit, ".image", what="image")
    what = f"Content-Type {media!r}" if media else "no Content-Type"
    raise ServeError(415, f"unsupported {what}: send an image as the body ({', '.join(sorted(IMAGE_TYPES))}) "
                     "or in the multipart field 'file'")


@router.post("/classify")
async def classify(request: Request) -> JSONResponse:
    state = request.app.state
    loaded = loaded_model(state, KIND)
    upload = await receive_image(request, state.config.limits.max_body_bytes)
    try:
        record = await anyio.to_thread.run_sync(classify_upload, loaded.model, upload,
                                                state.config.limits.max_image_pixels, limiter=state.limiter)
    finally:
        upload.path.unlink(missing_ok=True)
    return JSONResponse(record, headers=model_headers(loaded))
