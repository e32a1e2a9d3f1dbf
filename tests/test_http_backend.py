"""The `http` backend (backends/http.py) against services on 127.0.0.1.

The fast tests drive the backend, and a run, against small Starlette apps started here in a thread: one
that speaks the serve protocol with the fake backend's images (for what does not need a model), one that
answers 500, one that answers too late. The slow tests drive `python -m harness` against a real
`python -m harness serve` in a child process (tests/serve_fixture.py), with the tiny model where the
images matter.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backends.base import BackendError, ModelSpec, PromptBatch
from backends.fake import FakeBackend
from backends.http import HttpBackend, HttpOptions, parse_server_timing

H = W = 64
TINY = {"model": "tiny", "width": W, "height": H, "steps": 8, "guidance_scale": 8.0}
SPEC = ModelSpec("tiny", "", "StableDiffusionXLPipeline", 8, 8.0, H, W)


# -- small services on 127.0.0.1, in a thread -------------------------------------------------------


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 at a free port; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def protocol_app(
    *, status: int = 200, delay_s: float = 0.0, health: dict[str, Any] | None = None, key: str = ""
) -> tuple[Starlette, list[dict[str, Any]]]:
    """The serve protocol with the fake backend's images (a function of sample_index); `status` other than
    200 answers every generation with that error, `delay_s` answers late. Returns the app and the list of
    request bodies it received."""
    received: list[dict[str, Any]] = []

    async def health_route(request: Request) -> Response:
        return JSONResponse({"status": "ready", "backend": "fake", **(health or TINY)})

    async def generate(request: Request) -> Response:
        if key and request.headers.get("authorization") != f"Bearer {key}":
            return JSONResponse({"error": {"message": "wrong key", "type": "auth", "param": None}}, 401)
        body = await request.json()
        received.append(body)
        if delay_s:
            await asyncio.sleep(delay_s)
        if status != 200:
            return JSONResponse({"error": {"message": "injected", "type": "server", "param": None}}, status)
        image = FakeBackend.image_for(int(body.get("sample_index", 0)), H, W)
        timing = {"Server-Timing": "queue;dur=1.5, generate;dur=2.25, encode;dur=0.5"}
        if body.get("response_format") == "raw":
            headers = {**timing, "X-Image-Shape": f"1,{H},{W},3"}
            return Response(image.tobytes(), media_type="application/octet-stream", headers=headers)
        from PIL import Image

        png = io.BytesIO()
        Image.fromarray(image).save(png, format="PNG")
        data = [{"b64_json": base64.b64encode(png.getvalue()).decode()}]
        return JSONResponse({"created": int(time.time()), "data": data}, headers=timing)

    routes = [Route("/health", health_route), Route("/v1/images/generations", generate, methods=["POST"])]
    return Starlette(routes=routes), received


def batch(indices: tuple[int, ...]) -> PromptBatch:
    n = len(indices)
    latents = np.stack([np.full((4, 16, 16), i, dtype=np.float32) for i in indices])
    return PromptBatch(indices, tuple(f"prompt {i}" for i in indices), ("neg",) * n, latents)


def loaded(url: str, **options: Any) -> HttpBackend:
    backend = HttpBackend(SPEC, HttpOptions(url=url, **options))
    backend.load()
    return backend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the backend on its own ------------------------------------------------------------------------


def test_server_timing_is_parsed_to_ns() -> None:
    assert parse_server_timing("queue;dur=1.5, generate;dur=30, encode;desc=x;dur=0.25, other") == {
        "queue": 1_500_000,
        "generate": 30_000_000,
        "encode": 250_000,
    }


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"api": "grpc"}, "backend.api"),
        ({"url": "ftp://host"}, "backend.url"),
        ({"url": "http://user:secret@host"}, "credentials"),
        ({"response_format": "url"}, "backend.response_format"),
        ({"concurrency": 0}, "backend.concurrency"),
        ({"timeout_s": 0}, "backend.timeout_s"),
        ({"retries": -1}, "backend.retries"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], words: str) -> None:
    with pytest.raises(BackendError, match=words):
        HttpBackend(SPEC, HttpOptions(**options))


@pytest.mark.parametrize("response_format", ["raw", "b64_json"])
def test_images_come_back_in_order_with_the_latency_split(response_format: str) -> None:
    app, received = protocol_app()
    with serving(app) as url:
        backend = loaded(url, response_format=response_format)
        backend.warmup(batch((0,)))
        result = backend.generate(batch((5, 2, 9)))
        backend.close()
        backend.close()  # twice is fine
    expected = np.stack([FakeBackend.image_for(i, H, W) for i in (5, 2, 9)])
    np.testing.assert_array_equal(result.images, expected)
    assert set(result.stage_times_ns) == {
        "server_queue",
        "server_generate",
        "server_encode",
        "client_decode",
        "client_other",
    }
    assert result.stage_times_ns["server_generate"] == 2_250_000
    # the latents travel as their sha256: what the in-process run would give that sample
    body = received[-1]
    assert body["sample_index"] == 9 and body["negative_prompt"] == "neg" and body["size"] == f"{W}x{H}"
    assert (
        body["latents_sha256"]
        == __import__("hashlib").sha256(np.full((4, 16, 16), 9, np.float32).tobytes()).hexdigest()
    )
    stats = backend.endpoint_stats()
    assert stats.status_counts == {"200": 4} and stats.requests == 4 and stats.retries == 0
    assert len(stats.splits_ns["e2e"]) == 3  # the warm-up request is counted, not split
    assert stats.first_image_s is not None and stats.first_image_s >= stats.first_request_s  # type: ignore[operator]
    with pytest.raises(BackendError, match="after close"):
        backend.generate(batch((1,)))


def test_api_openai_sends_the_prompt_only_and_is_not_comparable() -> None:
    app, received = protocol_app()
    with serving(app) as url:
        backend = loaded(url, api="openai", response_format="raw")
        backend.generate(batch((3,)))
        backend.close()
    assert set(received[0]) == {"prompt", "n", "size", "response_format"}
    assert received[0]["response_format"] == "b64_json"  # api=openai always asks for b64_json
    stats = backend.endpoint_stats()
    assert (
        not stats.comparable_with_mlperf_accuracy
        and "not comparable with MLPerf accuracy" in stats.not_comparable_reason
    )


def test_500_is_retried_then_fails_with_the_sample_ids() -> None:
    app, received = protocol_app(status=500)
    with serving(app) as url:
        backend = loaded(url, retries=2)
        with pytest.raises(BackendError, match=r"samples \[4, 7\].*HTTP 500: injected.*3 attempts"):
            backend.generate(batch((4, 7)))
        backend.close()
    assert len(received) == 6  # 2 samples x (1 + 2 retries)
    stats = backend.endpoint_stats()
    assert stats.status_counts == {"500": 6} and stats.retries == 4


def test_a_4xx_is_not_retried() -> None:
    app, received = protocol_app(status=409)
    with serving(app) as url:
        backend = loaded(url, retries=3)
        with pytest.raises(BackendError, match=r"samples \[1\].*HTTP 409"):
            backend.generate(batch((1,)))
        backend.close()
    assert len(received) == 1


def test_a_slow_server_times_out() -> None:
    app, _ = protocol_app(delay_s=1.5)
    with serving(app) as url:
        backend = loaded(url, timeout_s=0.2, retries=1)
        start = time.monotonic()
        with pytest.raises(BackendError, match=r"samples \[2\].*backend.timeout_s=0.2"):
            backend.generate(batch((2,)))
        elapsed = time.monotonic() - start
        backend.close()
    assert elapsed < 1.2, elapsed  # two attempts of 0.2 s and a back-off, not the server's 1.5 s
    assert backend.endpoint_stats().status_counts == {"timeout": 2}


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = protocol_app(key="s3cret-key")
    with serving(app) as url:
        with pytest.raises(BackendError, match="HTTP_TEST_KEY"):
            loaded(url, api_key_env="HTTP_TEST_KEY")
        monkeypatch.setenv("HTTP_TEST_KEY", "s3cret-key")
        backend = loaded(url, api_key_env="HTTP_TEST_KEY")
        backend.generate(batch((0,)))
        backend.close()
    assert "s3cret-key" not in json.dumps(backend.describe())


def test_a_server_with_another_model_is_refused() -> None:
    app, _ = protocol_app(health={**TINY, "steps": 20})
    with serving(app) as url, pytest.raises(BackendError, match=r"steps 20 \(the run has 8\)"):
        loaded(url)


def test_an_unreachable_url_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendError, match=f"cannot reach the service at {url}"):
        loaded(url)
