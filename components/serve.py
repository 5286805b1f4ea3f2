"""`cs230 serve`: an HTTP API over the champion models (DESIGN §6).

    GET  /healthz                    status and loaded models (never needs the token)
    GET  /v1/models                  name, version, alias, metrics of each served model
    POST /v1/admin/reload            re-read the registry now (the poll does it every poll_seconds)
    POST /v1/trigger-word/detect     WAV/FLAC/PCM in, `cs230 detect`'s JSON line out
    WS   /v1/trigger-word/stream     PCM16 chunks in, detections out as they happen
    POST /v1/day-night/classify      an image in, `cs230 classify`'s JSON line out
    POST /v1/face/embed|verify|identify   images in, `cs230 face`'s JSON lines out (serving/face.py)
    POST /v1/style/<name>            an image in, the served style's fast network's PNG out

`create_app(config)` is the whole server: uvicorn runs it here (`run`), Ray Serve runs the
same app in each replica (components/serving/ray_app.py). Its lifespan loads the models
(unless a loaded `ModelHolder` is given), sets one torch thread, and polls the registry.
Every error is `{"error": "..."}` with a 4xx status (503 when busy); none stops the server.
Limits (params.yaml `serve:`): body bytes, audio seconds (counted as decoded), requests in
flight, bytes and seconds of a stream, image pixels (from the header, before decoding).
Detection settings are each served model's own (`detection_config()`), so a new champion
brings its own; `detection_overrides` (the operator's flags) replace them for every model.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.websockets import WebSocket

from components.config import ServeParams
from components.serving import day_night, face, style, trigger_word
from components.serving.holder import ModelHolder
from components.serving.inputs import ServeError

log = logging.getLogger("cs230.serve")
# kind -> its routes (holder.MODEL_KINDS: how to load it)
ROUTERS = {"trigger-word": trigger_word.router, "day-night": day_night.router, "face": face.router,
           "style": style.router}
OPEN_PATHS = {"/healthz"}  # answered without the token


@dataclass(frozen=True)
class ServeConfig:
    """Everything a server (or a Ray replica) needs; plain values, so it pickles."""
    refs: dict  # kind -> model reference: models:/<name>@champion, another URI, or a path
    tracking_uri: str | None = None
    limits: ServeParams = ServeParams()
    # detection settings the operator set (threshold, smoothing_steps, refractory_s): they
    # replace those of every model served; the rest stay each model's own, hot-swaps included
    detection_overrides: dict = field(default_factory=dict)
    token: str | None = None
    face_index: str | None = None  # the gallery folder /v1/face/identify searches (cs230 face enroll)
    style_max_side: int = 1024  # style_transfer.max_size: a larger image is shrunk before stylising


class BearerToken:
    """ASGI middleware: with a token set, every HTTP and WebSocket route but OPEN_PATHS needs
    `Authorization: Bearer <token>`; else 401. A browser's WebSocket cannot set headers, so it may
    offer the subprotocols `bearer, <token>` instead (the server answers with `bearer`). The token
    is never taken from the URL, which access logs and proxies record."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS or self._ok(scope):
            return await self.app(scope, receive, send)
        message = "missing or wrong bearer token: send the header 'Authorization: Bearer <token>'"
        if scope["type"] == "http":
            return await JSONResponse({"error": message}, 401, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        await trigger_word.deny(WebSocket(scope, receive, send), 401, message)

    def _ok(self, scope) -> bool:
        header = dict(scope.get("headers", [])).get(b"authorization", b"")
        given = header[7:] if header[:7].lower() == b"bearer " else b""
        if not given and scope["type"] == "websocket":
            given = trigger_word.subprotocol_token(scope).encode()
        return bool(given) and hmac.compare_digest(given, self.token)


class ConcurrencyLimit:
    """ASGI middleware: at most `limit` HTTP requests and WebSocket sessions in flight (OPEN_PATHS
    aside, so health checks answer under load); one more is refused at once with 503 and a JSON
    error rather than queued, so a flood cannot pile up bodies, temporary files and threads."""

    def __init__(self, app, limit: int):
        self.app, self.limit, self.active = app, limit, 0  # one event loop: no lock needed

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if self.active >= self.limit:
            message = f"server busy: {self.limit} requests in flight (serve.max_concurrent_requests); retry later"
            if scope["type"] == "http":
                return await JSONResponse({"error": message}, 503, {"Retry-After": "1"})(scope, receive, send)
            return await trigger_word.deny(WebSocket(scope, receive, send), 503, message)
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


async def _poll(holder: ModelHolder, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await anyio.to_thread.run_sync(holder.refresh)
        except Exception:  # a poll must never end the server; the next one tries again
            log.exception("model refresh failed")


def create_app(config: ServeConfig, holder: ModelHolder | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import torch

        torch.set_num_threads(1)  # one thread per inference; concurrency comes from the limiter
        app.state.holder = holder or ModelHolder(config.refs, config.tracking_uri)
        if not app.state.holder.loaded():
            await anyio.to_thread.run_sync(lambda: app.state.holder.refresh(strict=True))
        app.state.limiter = anyio.CapacityLimiter(config.limits.inference_threads)
        poll = (asyncio.create_task(_poll(app.state.holder, config.limits.poll_seconds))
                if config.limits.poll_seconds > 0 else None)
        yield
        if poll:
            poll.cancel()

    app = FastAPI(title="cs230 serve", lifespan=lifespan)
    app.state.config = config
    app.add_middleware(ConcurrencyLimit, limit=config.limits.max_concurrent_requests)
    if config.token:  # outermost: a request without the token never takes a slot
        app.add_middleware(BearerToken, token=config.token)
    for kind in config.refs:
        app.include_router(ROUTERS[kind])

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError):
        return JSONResponse({"error": exc.message}, exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
            parts = request.url.path.split("/")
            if len(parts) > 3 and parts[1] == "v1" and parts[2] not in ("models", "admin") and parts[2] not in config.refs:
                message = f"unknown model {parts[2]!r}; this server serves: {', '.join(config.refs)}"
        return JSONResponse({"error": message}, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # a bug answers 500; the server lives on
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, 500)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        return JSONResponse({"error": f"{'.'.join(map(str, err['loc']))}: {err['msg']}"}, 422)

    @app.get("/healthz")
    async def healthz(request: Request):
        h = request.app.state.holder
        # open to all: names and versions only (paths, store URIs and errors need the token)
        return {"status": "ok" if len(h.loaded()) == len(config.refs) else "degraded",
                "models": {m.kind: {"name": m.name, "version": m.version} for m in h.loaded()},
                "refresh_failed": sorted(h.errors)}

    @app.get("/v1/models")
    async def models(request: Request):
        return {"models": [m.describe() for m in request.app.state.holder.loaded()]}

    @app.post("/v1/admin/reload")
    async def reload(request: Request):
        """Swap in any new champion now; the current models keep serving until then."""
        h = request.app.state.holder
        changes = await anyio.to_thread.run_sync(h.refresh)
        return {"changed": changes, "models": [m.describe() for m in h.loaded()], "errors": h.errors}

    return app


def run(config: ServeConfig, host: str, port: int) -> None:
    """Load the models (ModelLoadError if one is missing), then serve with uvicorn until Ctrl-C."""
    import uvicorn

    if not log.handlers:  # model swaps and refresh failures, next to uvicorn's lines
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    holder = ModelHolder(config.refs, config.tracking_uri)
    holder.refresh(strict=True)
    for m in holder.loaded():
        print(f"serving {m.kind}: {m.source}" + (f" (alias {m.alias})" if m.alias else ""), flush=True)
    uvicorn.run(create_app(config, holder), host=host, port=port, log_level="info",
                ws_max_size=config.limits.max_body_bytes, timeout_graceful_shutdown=5)

