"""The HTTP API and its page (FastAPI): ``viewfinder serve RUN...``.

Routes:
- ``POST /v1/predict`` (the first run) and ``POST /v1/runs/{name}/predict``: a multipart form with
  ``image`` (the file) and, for VQA runs, ``question``; optional ``top_k``. Answers JSON:
  ``{"run", "task", "prediction": {the submission row less its id}, "top_k": [...] (classes),
  "timing_ms": {...}}``.
- ``GET /v1/runs``: task, model, classes, input size and metrics of each run. ``GET /health``.
- ``GET /``: one static page (``static/index.html``, no build step, no network).

Safety, because a server is reachable by whatever can reach its port:
- it binds 127.0.0.1 unless told otherwise (``serve --host``), CORS is off unless origins are
  named, and ``--api-key`` (or ``VIEWFINDER_API_KEY``) makes every ``/v1`` route answer 401
  without ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``;
- bodies over ``max_upload_mb`` are refused with 413 before they are read whole; images over
  ``max_pixels`` are refused before decoding (decompression bombs); not an image or an
  unsupported mode -> 415; truncated or corrupt, a missing or empty field -> 422;
- it never reads a path or a URL from a request: images arrive as bytes;
- every error is JSON ``{"error": "one line"}`` - never a traceback - and the model keeps
  serving (the batcher fails only the requests of a failed batch).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from viewfinder.errors import BadImageError
from viewfinder.serve.batching import Batcher
from viewfinder.serve.predictor import ServedRun, shape_result

MAX_QUESTION_CHARS = 500
MAX_TOP_K = 100


@dataclass
class ServeSettings:
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_upload_mb: float = 20.0
    max_pixels: int = 100_000_000  # 100 MP: a 50 MP phone photo passes, a 20k x 20k bomb does not
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def image_status(error: BadImageError) -> int:
    """415 for what is not a (supported) image at all, 422 for a damaged or oversized one."""
    reason = error.reason
    return 415 if reason.startswith(("not an image", "unsupported image mode")) else 422


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, by its Content-Length or, for a
    chunked body, as soon as the bytes read pass it (the body is never held whole beyond it)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []  # chunked: read up to the limit, then replay
        total, more = 0, True
        while more:
            message = await receive()
            messages.append(message)
            total += len(message.get("body", b""))
            if total > self.limit:
                await _too_large(send, self.limit)
                return
            more = message.get("type") == "http.request" and message.get("more_body", False)

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    response = JSONResponse(
        {"error": f"request body over the limit of {limit / 1e6:g} MB (serve --max-upload-mb)"},
        status_code=413,
    )
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(runs: list[ServedRun], settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``runs`` (already loaded); see the module doc."""
    settings = settings or ServeSettings()
    by_name = {r.name: r for r in runs}
    batchers = {
        r.name: Batcher(r, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms)
        for r in runs
    }
    # no /docs: Swagger UI loads its scripts from a CDN, which offline servers cannot reach
    app = FastAPI(title="viewfinder", docs_url=None, redoc_url=None)
    app.state.runs, app.state.batchers, app.state.settings = by_name, batchers, settings
    _add_error_handlers(app)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"])  # fmt: skip
    app.add_middleware(BodyLimit, limit=int(settings.max_upload_mb * 1e6))

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        text = resources.files("viewfinder.serve").joinpath("static/index.html").read_text()
        return HTMLResponse(text)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        served = {n: {"batches": b.batches, "images": b.images} for n, b in batchers.items()}
        return {"status": "ok", "runs": served}

    @app.get("/v1/runs")
    async def list_runs(request: Request) -> dict[str, Any]:
        _check_key(request, settings)
        return {"runs": [r.info for r in runs]}

    @app.post("/v1/predict")
    async def predict_first(request: Request) -> dict[str, Any]:
        return await _predict(request, runs[0].name)

    @app.post("/v1/runs/{name}/predict")
    async def predict_named(name: str, request: Request) -> dict[str, Any]:
        return await _predict(request, name)

    async def _predict(request: Request, name: str) -> dict[str, Any]:
        start = time.perf_counter()
        _check_key(request, settings)
        if name not in by_name:
            raise ApiError(404, f"no run named {name!r}; served: {', '.join(by_name)}")
        served, batcher = by_name[name], batchers[name]
        batcher.announce()
        try:
            data, fields, top_k = await _read_form(request, served)
            decode_start = time.perf_counter()
            image = await asyncio.to_thread(served.decode, data, max_pixels=settings.max_pixels)
        except BadImageError as error:
            batcher.withdraw()
            raise ApiError(image_status(error), f"image: {error.reason}") from None
        except BaseException:
            batcher.withdraw()
            raise
        decoded = time.perf_counter()
        try:
            row, timing = await batcher.submit(image, fields)
        except Exception as error:  # the batch failed; the batcher itself goes on serving
            message = " ".join(str(error).split()) or type(error).__name__
            raise ApiError(500, f"prediction failed: {message}") from None
        result = shape_result(served, row, top_k)
        total = (time.perf_counter() - start) * 1000
        timing = {"decode": (decoded - decode_start) * 1000, **timing, "total": total}
        return {"run": name, "task": served.task.name, **result,
                "timing_ms": {k: round(v, 2) for k, v in timing.items()}}  # fmt: skip

    return app


async def _read_form(request: Request, served: ServedRun) -> tuple[bytes, dict[str, str], int]:
    """The upload's bytes, the run's text fields and ``top_k`` (one-line 4xx errors)."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise ApiError(415, "send a multipart/form-data form with the file in field 'image'")
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
    except Exception as error:  # the multipart parser's own errors name the broken part
        raise ApiError(400, f"malformed multipart form: {' '.join(str(error).split())}") from None
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        raise ApiError(422, "missing field 'image' (the image file)")
    data = await upload.read()
    fields: dict[str, str] = {}
    for key in served.fields:
        value = form.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ApiError(422, f"missing field {key!r}: this {served.task.name} run needs it")
        if len(value) > MAX_QUESTION_CHARS:
            raise ApiError(422, f"field {key!r} is over {MAX_QUESTION_CHARS} characters")
        fields[key] = value.strip()
    raw = form.get("top_k", "5")
    if not isinstance(raw, str) or not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP_K:
        raise ApiError(422, f"top_k must be a whole number from 1 to {MAX_TOP_K}")
    return data, fields, int(raw)


def _check_key(request: Request, settings: ServeSettings) -> None:
    if not settings.api_key:
        return
    given = request.headers.get("x-api-key", "")
    bearer = request.headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        given = given or bearer[7:].strip()
    if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
        raise ApiError(401, "missing or wrong API key (header X-API-Key or Authorization: Bearer)")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        message = " ".join(str(error).split()) or type(error).__name__
        return JSONResponse({"error": f"internal error: {message}"}, status_code=500)
