"""The FastAPI app: POST /v1/images/generations, GET /health, GET /metrics (the protocol: docs/serve.md).

The app exists before the model loads (/health answers 503 "loading" meanwhile); ServeState.ready() makes
it serve. Every error is one ApiError answered as {"error": {message, type, param, code}}: FastAPI's own
422 for a bad request becomes 400 naming the field.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from harness.serve.auth import authorized
from harness.serve.errors import ApiError
from harness.serve.generator import GenerationFailed, Generator, ImageResult, ShuttingDown
from harness.serve.metrics import ServeMetrics
from harness.serve.schema import check_request, parse_body, validation_error
from harness.serve.service import ServedModel

GENERATIONS = "/v1/images/generations"
ENDPOINTS = (GENERATIONS, "/health", "/metrics")
PNG_COMPRESS_LEVEL = 1  # lossless either way; level 1 is several times faster to write than the default 6


@dataclass
class ServeState:
    """What the app serves: nothing until ready(), then the model and its generator; closing refuses work."""

    served: ServedModel | None = None
    generator: Generator | None = None
    closing: bool = False

    def ready(self, served: ServedModel, generator: Generator) -> None:
        self.served, self.generator = served, generator

    def serving(self) -> tuple[ServedModel, Generator]:
        if self.closing:
            raise ApiError(503, "the server is shutting down")
        if self.served is None or self.generator is None:
            raise ApiError(503, "the model is still loading; GET /health answers 200 once it is ready")
        return self.served, self.generator


def create_app(state: ServeState, metrics: ServeMetrics, api_key: str = "") -> FastAPI:
    app = FastAPI(title="harness serve", docs_url=None, redoc_url=None, openapi_url=None)

    def count(request: Request, status: int) -> None:
        path = request.url.path
        metrics.requests.labels(endpoint=path if path in ENDPOINTS else "other", status=str(status)).inc()

    def error_response(request: Request, exc: ApiError) -> JSONResponse:
        count(request, exc.status)
        metrics.errors.labels(type=exc.type).inc()
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, validation_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request, ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}"))

    def require_key(request: Request) -> None:
        if not authorized(request.headers.get("authorization"), api_key):
            raise ApiError(401, "missing or wrong bearer key; send the header 'Authorization: Bearer <key>'")

    @app.get("/health")
    def health() -> JSONResponse:
        s = state.served
        if state.closing:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        if s is None or state.generator is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse(
            {
                "status": "ready",
                "model": s.name,
                "backend": s.backend,
                "width": s.width,
                "height": s.height,
                "steps": s.steps,
                "guidance_scale": s.guidance_scale,
                "max_n": s.max_n,
                "max_batch_size": s.policy.max_batch_size,
                "latents_sha256": s.latents_sha256,
            }
        )

    @app.get("/metrics", dependencies=[Depends(require_key)])
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post(GENERATIONS, dependencies=[Depends(require_key)])
    async def generations(request: Request) -> Response:
        arrival_ns = time.perf_counter_ns()
        served, generator = state.serving()
        body = await read_body(request, served.max_body_bytes)
        generation = check_request(parse_body(body), served)
        try:
            results = await generator.generate(generation.items, arrival_ns)
        except ShuttingDown as exc:
            raise ApiError(503, str(exc)) from exc
        except GenerationFailed as exc:
            raise ApiError(500, str(exc)) from exc
        start_ns = time.perf_counter_ns()
        if generation.response_format == "raw":
            images = np.stack([r.image for r in results])
            response: Response = Response(
                images.tobytes(),
                media_type="application/octet-stream",
                headers={"X-Image-Shape": ",".join(map(str, images.shape))},
            )
        else:
            data = await asyncio.to_thread(encode_b64, results, [i.seed for i in generation.items])
            response = JSONResponse({"created": int(time.time()), "data": data})
        response.headers["Server-Timing"] = server_timing(results, time.perf_counter_ns() - start_ns)
        metrics.images.inc(len(results))
        count(request, 200)
        return response

    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes `limit` bytes (by Content-Length, or while streaming)."""
    too_large = f"the body is over serve.max_body_bytes; allowed: at most {limit} bytes"
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"{too_large}, got {length}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def encode_b64(results: Sequence[ImageResult], seeds: Sequence[int | None]) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = []
    for result, seed in zip(results, seeds, strict=True):
        buf = io.BytesIO()
        Image.fromarray(result.image).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        item: dict[str, Any] = {"b64_json": base64.b64encode(buf.getvalue()).decode("ascii")}
        if seed is not None:
            item["seed"] = seed
        data.append(item)
    return data


def server_timing(results: Sequence[ImageResult], encode_ns: int) -> str:
    """W3C Server-Timing in ms: queue = the longest wait of the request's images; generate = the backend
    batches that made them (summed when its images were split over several batches); encode."""
    queue_ns = max(r.queue_ns for r in results)
    generate_ns = sum({r.batch_id: r.generate_ns for r in results}.values())
    return f"queue;dur={queue_ns / 1e6:.3f}, generate;dur={generate_ns / 1e6:.3f}, encode;dur={encode_ns / 1e6:.3f}"
