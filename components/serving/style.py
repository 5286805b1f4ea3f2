"""Style route: POST /v1/style/<name>, an image in, the served fast network's PNG out.

One style is served (the champion of `style-<style_transfer.style>`, or `cs230 serve --style`); <name>
must be its style. The image is the raw body or the multipart field `file`, as for day-night, with
the same limits (body bytes, serve.max_image_pixels from the header) and errors; it is stylised at
its own size (sides rounded down to a multiple of 4) up to style_transfer.max_size on its long side.
"""
from __future__ import annotations

import io

import anyio
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from PIL import Image

from components.serving.day_night import IMAGE_TYPES, check_pixels
from components.serving.inputs import ServeError, Upload, loaded_model, model_headers, receive_multipart, receive_raw

KIND = "style"
router = APIRouter(prefix=f"/v1/{KIND}")


def stylize_upload(model, upload: Upload, max_pixels: int, max_side: int) -> bytes:
    """The PNG bytes of the stylised upload (blocking: run it in a worker thread)."""
    import torch

    from components.style.io import to_tensor, to_uint8
    check_pixels(upload, max_pixels)
    try:
        with Image.open(upload.path) as image:
            image = image.convert("RGB")
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    except Exception:  # noqa: BLE001 -- any undecodable file is the client's error, in one line
        raise ServeError(400, f"{upload.name}: not a readable image") from None
    rgb = np.asarray(image)
    with torch.inference_mode():
        out = to_uint8(model[0](to_tensor(rgb)))
    buffer = io.BytesIO()
    Image.fromarray(out).save(buffer, format="PNG")
    return buffer.getvalue()


@router.post("/{name}")
async def stylize(name: str, request: Request) -> Response:
    state = request.app.state
    loaded = loaded_model(state, KIND)
    served = loaded.model[1].get("style")
    if name != served:
        raise ServeError(404, f"style {name!r} is not served; this server serves style {served!r}")
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
        png = await anyio.to_thread.run_sync(stylize_upload, loaded.model, upload, state.config.limits.max_image_pixels,
                                             state.config.style_max_side, limiter=state.limiter)
    finally:
        upload.path.unlink(missing_ok=True)
    return Response(png, media_type="image/png", headers=model_headers(loaded))
