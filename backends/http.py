"""Backend `http`: a deployed image-generation service as the system under test.

    python -m harness serve --model tiny --backend fake --port 8000 &
    python -m harness --model tiny --backend http --set backend.url=http://127.0.0.1:8000 --scenario Server

Each sample of a batch is one POST /v1/images/generations (docs/endpoints.md, the wire protocol of
`harness serve`), sent through one httpx.AsyncClient whose keep-alive pool holds `concurrency`
connections; the client runs on an event loop of its own thread, so the SUT's worker threads only wait
on futures. With `api = "harness"` a request carries the sample's index, negative prompt and the sha256
of its latent, so the server generates from the same latent as an in-process run (and refuses, 409, if
its latent differs): accuracy-mode images are byte-equal. With `api = "openai"` a request carries the
prompt, n and size only, and the run is not comparable with MLPerf accuracy.

5xx responses, timeouts and broken connections are retried up to `retries` times; then the batch fails
with the sample ids (a BackendError), and the SUT's failure path ends the run. 4xx responses are not
retried. Each sample's client-side latency is split into the server's queue, generate and encode times
(its Server-Timing header), the client's decode, and the rest (network, transfer, HTTP), which
`endpoint_stats()` hands to the run's summary. The bearer key is read from the environment variable
named by `api_key_env` and goes nowhere but the Authorization header.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import numpy as np

from backends.base import BackendError, EndpointStats, ImageBatch, ModelSpec, PromptBatch

log = logging.getLogger(__name__)
# httpx logs every request at INFO: thousands of lines per run in harness.log and on stderr
logging.getLogger("httpx").setLevel(logging.WARNING)

T = TypeVar("T")

APIS = ("harness", "openai")
RESPONSE_FORMATS = ("raw", "b64_json")
GENERATIONS_PATH = "/v1/images/generations"
HEALTH_PATH = "/health"
# The parts of a sample's client-side latency, contiguous (they sum to "e2e").
SPLIT_PARTS = ("server_queue", "server_generate", "server_encode", "client_decode", "client_other")
NOT_COMPARABLE = (
    "backend.api=openai sends the prompt only (no latents): the images are not comparable with MLPerf "
    "accuracy, which needs the fixed latents"
)


@dataclass(frozen=True)
class HttpOptions:
    url: str = "http://127.0.0.1:8000"  # the service's base URL; the backend appends /v1/images/generations
    api: str = "harness"  # "harness" (harness serve: latents travel) or "openai" (prompt, n and size only)
    api_key_env: str = ""  # environment variable holding the bearer key; "" = no Authorization header
    concurrency: int = 8  # requests in flight (the harness runs this many workers sharing this backend)
    timeout_s: float = 60.0  # per request attempt (connect, write, read)
    retries: int = 2  # further attempts after a 5xx, a timeout or a broken connection
    response_format: str = "raw"  # api=harness: "raw" (uint8 bytes) or "b64_json" (PNG); api=openai: b64_json
    ready_timeout_s: float = 0.0  # load(): how long to wait for a server still warming up (503); 0 = not at all

    def __post_init__(self) -> None:
        _check_options(self)  # when the configuration is read: a bad value is refused before anything slow


@dataclass(frozen=True)
class _Reply:
    """One sample's image, (1, H, W, 3) uint8, and its latency split (part -> ns, "e2e" the whole)."""

    image: np.ndarray
    split_ns: dict[str, int]


class _RequestFailed(Exception):
    """A request that failed for good (after its retries, or a 4xx)."""


class HttpBackend:
    name = "http"
    Options = HttpOptions
    # The harness runs `concurrency` in-process workers that share this one instance (harness/run/benchmark.py)
    shared_by_threads = True

    def __init__(self, model: ModelSpec, options: HttpOptions) -> None:
        self.model = model
        self.options = options
        self.base_url = options.url.rstrip("/")
        self.response_format = "b64_json" if options.api == "openai" else options.response_format
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._health: dict[str, Any] = {}
        # What the client saw, kept after close() for the run's summary.
        self._status_counts: Counter[str] = Counter()
        self._requests = 0
        self._retries = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._splits: dict[str, list[int]] = {part: [] for part in ("e2e", *SPLIT_PARTS)}
        self._load_start_ns: int | None = None
        self._first_image_s: float | None = None
        self._first_request_s: float | None = None
        self._warming = False

    # -- the Backend contract -------------------------------------------------------------------------

    def load(self) -> None:
        self._load_start_ns = time.perf_counter_ns()
        headers = {}
        if self.options.api_key_env:
            key = os.environ.get(self.options.api_key_env, "")
            if not key:
                raise BackendError(
                    f"http backend: backend.api_key_env names {self.options.api_key_env!r}, but that environment "
                    "variable is not set or empty; export the service's key in it"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._start_loop()
        n = self.options.concurrency
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        # pool=None: a request waiting for a free connection is not a timeout of the service
        timeout = httpx.Timeout(self.options.timeout_s, pool=None)

        async def make() -> httpx.AsyncClient:
            return httpx.AsyncClient(limits=limits, timeout=timeout, headers=headers)

        self._client = self._call(make())
        if self.options.api == "harness":
            self._health = self._call(self._wait_until_ready())
            self._check_server()
        else:
            self._call(self._reachable())
            log.warning("%s", NOT_COMPARABLE)

    def warmup(self, batch: PromptBatch) -> None:
        self._warming = True
        try:
            self.generate(batch)
        finally:
            self._warming = False

    def generate(self, batch: PromptBatch) -> ImageBatch:
        if self._closed or self._client is None:
            raise BackendError("http backend: generate() called before load() or after close()")
        replies = self._call(self._send_batch(batch))
        self._record([r.split_ns for r in replies])
        out = np.ascontiguousarray(np.concatenate([r.image for r in replies], axis=0))
        # The batch took as long as its slowest request: its split is the batch's stage times.
        slowest = max(replies, key=lambda r: r.split_ns["e2e"]).split_ns
        return ImageBatch(images=out, stage_times_ns={part: slowest[part] for part in SPLIT_PARTS})

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {
            "backend": self.name,
            "device": "remote",
            "url": self.base_url,
            "api": o.api,
            "api_key_env": o.api_key_env,  # the variable's name, never its value
            "concurrency": o.concurrency,
            "timeout_s": o.timeout_s,
            "retries": o.retries,
            "response_format": self.response_format,
            "server": dict(self._health),
        }

    def endpoint_stats(self) -> EndpointStats:
        """What the client saw of the service so far (also after close())."""
        with self._lock:
            return EndpointStats(
                url=self.base_url,
                api=self.options.api,
                response_format=self.response_format,
                concurrency=self.options.concurrency,
                comparable_with_mlperf_accuracy=self.options.api == "harness",
                not_comparable_reason="" if self.options.api == "harness" else NOT_COMPARABLE,
                server=dict(self._health),
                requests=self._requests,
                status_counts=dict(self._status_counts),
                retries=self._retries,
                max_in_flight=self._max_in_flight,
                splits_ns={part: tuple(v) for part, v in self._splits.items()},
                first_image_s=self._first_image_s,
                first_request_s=self._first_request_s,
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop, client = self._loop, self._client
        if loop is not None and client is not None:
            try:
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=5)
            except Exception as exc:  # closing must not hide the run's own result
                log.debug("http backend: closing the client: %s", exc)
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client = None

    def _check_server(self) -> None:
        """The served model must be the run's: name, size, steps and guidance scale (GET /health)."""
        m, health = self.model, self._health
        wanted = {
            "model": m.name,
            "width": m.width,
            "height": m.height,
            "steps": m.steps,
            "guidance_scale": m.guidance_scale,
        }
        wrong = [
            f"{key} {health.get(key)!r} (the run has {value!r})"
            for key, value in wanted.items()
            if key not in health or not _same(health[key], value)
        ]
        if wrong:
            raise BackendError(
                f"http backend: the service at {self.base_url} serves another model configuration: "
                f"{'; '.join(wrong)}; run with the served model's configuration or serve the run's"
            )

    # -- the event loop -------------------------------------------------------------------------------

    def _start_loop(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http-backend-loop", daemon=True)
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the client's loop and wait for it (every await inside is bounded by timeout_s)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # -- requests -------------------------------------------------------------------------------------

    async def _wait_until_ready(self) -> dict[str, Any]:
        url = self.base_url + HEALTH_PATH
        deadline = time.monotonic() + self.options.ready_timeout_s
        while True:
            response = await self._get(url)
            if response.status_code == 200:
                data = response.json()
                if not isinstance(data, dict):
                    raise BackendError(f"http backend: GET {url} answered {data!r}, not a JSON object")
                return data
            if response.status_code == 503 and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                continue
            wait = f" after waiting {self.options.ready_timeout_s:g} s (backend.ready_timeout_s)"
            raise BackendError(
                f"http backend: the service at {self.base_url} is not ready: GET {url} answered "
                f"{response.status_code} {_error_text(response)}{wait if response.status_code == 503 else ''}"
            )

    async def _reachable(self) -> None:
        """api=openai has no health endpoint: any HTTP answer from the base URL shows it is reachable."""
        await self._get(self.base_url + "/")

    async def _get(self, url: str) -> httpx.Response:
        assert self._client is not None
        try:
            return await self._client.get(url)
        except httpx.HTTPError as exc:
            raise BackendError(
                f"http backend: cannot reach the service at {self.base_url} (GET {url}: "
                f"{type(exc).__name__}: {exc or 'no answer'}); start it (python -m harness serve ...) or fix "
                "backend.url"
            ) from exc

    async def _send_batch(self, batch: PromptBatch) -> list[_Reply]:
        results = await asyncio.gather(*(self._send_one(batch, i) for i in range(len(batch))), return_exceptions=True)
        failed = [(batch.sample_indices[i], r) for i, r in enumerate(results) if isinstance(r, BaseException)]
        if failed:
            ids = ", ".join(str(s) for s, _ in failed)
            raise BackendError(f"http backend: samples [{ids}] failed at {self.base_url}: {failed[0][1]}")
        return [r for r in results if isinstance(r, _Reply)]

    def _body(self, batch: PromptBatch, i: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": batch.prompts[i],
            "n": 1,
            "size": f"{self.model.width}x{self.model.height}",
            "response_format": self.response_format,
        }
        if self.options.api == "harness":
            latent = np.ascontiguousarray(batch.latents[i], dtype=np.float32)
            body["negative_prompt"] = batch.negative_prompts[i]
            body["sample_index"] = int(batch.sample_indices[i])
            body["latents_sha256"] = hashlib.sha256(latent.tobytes()).hexdigest()
        return body

    async def _send_one(self, batch: PromptBatch, i: int) -> _Reply:
        assert self._client is not None
        url = self.base_url + GENERATIONS_PATH
        body = self._body(batch, i)
        sent_ns = time.perf_counter_ns()
        last = ""
        for attempt in range(self.options.retries + 1):
            if attempt:
                with self._lock:
                    self._retries += 1
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))  # a short back-off before the next attempt
            self._in_flight += 1  # only this loop's thread touches it
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            try:
                response = await self._client.post(url, json=body)
            except httpx.TimeoutException:
                self._count("timeout")
                last = f"no answer within backend.timeout_s={self.options.timeout_s:g} s"
                continue
            except httpx.TransportError as exc:  # refused, reset, closed mid-response: the server may be gone
                self._count("connection_error")
                last = f"connection failed ({type(exc).__name__}: {exc or 'closed'})"
                continue
            finally:
                self._in_flight -= 1
            received_ns = time.perf_counter_ns()
            self._count(str(response.status_code))
            if response.status_code == 200:
                if self.response_format == "raw":  # a view on the bytes: cheap enough for the loop
                    image = self._decode_raw(response.content, response.headers.get("x-image-shape", ""))
                else:  # PNG decoding would hold up every other request on this loop
                    image = await asyncio.to_thread(self._decode_png, response.content)
                decoded_ns = time.perf_counter_ns()
                timing = parse_server_timing(response.headers.get("server-timing", ""))
                return _Reply(image, _split(sent_ns, received_ns, decoded_ns, timing))
            last = f"HTTP {response.status_code}: {_error_text(response)}"
            if response.status_code < 500:  # the request is wrong: another attempt gives the same answer
                raise _RequestFailed(last)
        raise _RequestFailed(f"{last} (after {self.options.retries + 1} attempts)")

    def _count(self, status: str) -> None:
        with self._lock:
            self._requests += 1
            self._status_counts[status] += 1

    # -- decoding and timing --------------------------------------------------------------------------

    def _decode_raw(self, content: bytes, shape_header: str) -> np.ndarray:
        h, w = self.model.height, self.model.width
        expected = f"1,{h},{w},3"
        shape = shape_header.replace(" ", "")
        if shape != expected or len(content) != h * w * 3:
            raise BackendError(
                f"http backend: raw response of {len(content)} bytes with X-Image-Shape {shape!r}; "
                f"expected {expected} ({h * w * 3} bytes) for the model's {w}x{h}"
            )
        return np.frombuffer(content, dtype=np.uint8).reshape(1, h, w, 3)

    def _decode_png(self, content: bytes) -> np.ndarray:
        from PIL import Image

        h, w = self.model.height, self.model.width
        data = json.loads(content).get("data") or []
        if len(data) != 1 or "b64_json" not in data[0]:
            raise BackendError(f"http backend: expected one data item with b64_json, got {len(data)} items")
        with Image.open(io.BytesIO(base64.b64decode(data[0]["b64_json"]))) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.uint8)
        if array.shape != (h, w, 3):
            raise BackendError(f"http backend: the service returned a {array.shape} image; the model is {w}x{h}")
        return array[None]

    def _record(self, splits: list[dict[str, int]]) -> None:
        now = time.perf_counter_ns()
        with self._lock:
            if self._first_image_s is None and self._load_start_ns is not None:
                self._first_image_s = (now - self._load_start_ns) / 1e9
                self._first_request_s = splits[0]["e2e"] / 1e9
            if self._warming:
                return  # warm-up requests count in the status counts, not in the latency split
            for split in splits:
                for part, ns in split.items():
                    self._splits[part].append(ns)


def _split(sent_ns: int, received_ns: int, decoded_ns: int, server_timing_ns: dict[str, int]) -> dict[str, int]:
    """A sample's client-side latency and its contiguous parts; the rest (network, transfer, HTTP, the
    client's event loop) is what the server's and the decoder's times leave."""
    split = {
        "e2e": decoded_ns - sent_ns,
        "server_queue": server_timing_ns.get("queue", 0),
        "server_generate": server_timing_ns.get("generate", 0),
        "server_encode": server_timing_ns.get("encode", 0),
        "client_decode": decoded_ns - received_ns,
    }
    split["client_other"] = max(0, split["e2e"] - sum(split[p] for p in SPLIT_PARTS[:-1]))
    return split


def parse_server_timing(header: str) -> dict[str, int]:
    """W3C Server-Timing ("queue;dur=1.5, generate;dur=30") -> name -> ns; entries without dur are left out."""
    out: dict[str, int] = {}
    for entry in header.split(","):
        name, *params = (p.strip() for p in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur" and name:
                try:
                    out[name] = int(float(value.strip().strip('"')) * 1e6)
                except ValueError:
                    pass
    return out


def _same(served: Any, wanted: Any) -> bool:
    if isinstance(wanted, float):
        return isinstance(served, (int, float)) and abs(float(served) - wanted) < 1e-9
    return bool(served == wanted)


def _error_text(response: httpx.Response) -> str:
    """The service's error message (OpenAI's {"error": {"message": ...}}), else the start of the body."""
    try:
        data = response.json()
        message = data["error"]["message"] if isinstance(data.get("error"), dict) else data
    except (ValueError, KeyError, TypeError, AttributeError):
        message = response.text[:200]
    return str(message)


def _check_options(o: HttpOptions) -> None:
    parts = urlsplit(o.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackendError(f"http backend: backend.url must be http://HOST[:PORT] or https://..., got {o.url!r}")
    if parts.username or parts.password:
        raise BackendError(
            "http backend: backend.url must not carry credentials (they would be written to config.toml); put "
            "the key in an environment variable and name it in backend.api_key_env"
        )
    if o.api not in APIS:
        raise BackendError(f"http backend: backend.api must be one of {', '.join(APIS)}, got {o.api!r}")
    if o.response_format not in RESPONSE_FORMATS:
        raise BackendError(
            f"http backend: backend.response_format must be one of {', '.join(RESPONSE_FORMATS)}, "
            f"got {o.response_format!r}"
        )
    if o.concurrency < 1:
        raise BackendError(f"http backend: backend.concurrency must be >= 1, got {o.concurrency}")
    if o.timeout_s <= 0:
        raise BackendError(f"http backend: backend.timeout_s must be > 0, got {o.timeout_s}")
    if o.retries < 0:
        raise BackendError(f"http backend: backend.retries must be >= 0, got {o.retries}")
    if o.ready_timeout_s < 0:
        raise BackendError(f"http backend: backend.ready_timeout_s must be >= 0, got {o.ready_timeout_s}")
