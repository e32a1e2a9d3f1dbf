"""`python -m harness serve` with a real uvicorn server on 127.0.0.1 at a free port (tests/serve_fixture.py).

The fake backend (instant, its image a function of the sample index) where the model does not matter: two
servers started side by side for the module; the tiny model (the real pipeline) in the slow set. The command's
refusals (exit code 2, one line) run main() in this process: they exit before anything binds.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import json
import logging
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.serve_fixture import ServeProcess, start_serve

GENERATIONS = "/v1/images/generations"
KEY_ENV = "HARNESS_TEST_SERVE_KEY"
# The main server's limits, small enough that each refusal is cheap to provoke.
LIMITS = ["--set", "serve.max_n=4", "--set", "serve.max_prompt_chars=1000", "--set", "serve.max_body_bytes=4096"]
MAIN_ARGS = ["--backend", "fake", *LIMITS]
# Keyed: the first backend call fails; one image at a time, 300 ms each (to catch requests queued at shutdown).
KEYED_ARGS = [
    "--backend",
    "fake",
    "--api-key-env",
    KEY_ENV,
    "--set",
    "backend.fail_at_call=1",
    "--set",
    "backend.per_image_latency_ms=300",
    "--set",
    "sut.max_batch_size=1",
]


@pytest.fixture(scope="module")
def key() -> str:
    return "sk-serve-test-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def started(
    harness_cache: Path, tmp_path_factory: pytest.TempPathFactory, key: str
) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    """Both fake servers, started at once (their start-up is mostly imports; two cores share it)."""
    main = start_serve(MAIN_ARGS, log_path=tmp_path_factory.mktemp("main") / "serve.log")
    keyed = start_serve(KEYED_ARGS, env={KEY_ENV: key}, log_path=tmp_path_factory.mktemp("keyed") / "serve.log")
    try:
        yield main, keyed
    finally:
        main.stop()
        keyed.stop()


@pytest.fixture(scope="module")
def reference(started: Any) -> Any:
    """What an in-process run of the same configuration has: its inputs and its fake backend, loaded (made
    while the servers start)."""
    from harness.config import resolve_config
    from harness.run.model import make_backend, prepare_inputs

    cfg = resolve_config("tiny", None, {"run.backend": "fake", "run.scenario": "Server"}, [])
    inputs = prepare_inputs(cfg)
    backend = make_backend(cfg, inputs.spec)
    backend.load()
    yield inputs, backend
    backend.close()


@pytest.fixture(scope="module")
def servers(started: tuple[ServeProcess, ServeProcess], reference: Any) -> tuple[ServeProcess, ServeProcess]:
    for server in started:
        server.wait_ready()
    return started


@pytest.fixture(scope="module")
def url(servers: tuple[ServeProcess, ServeProcess]) -> str:
    return servers[0].url


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


def post(client: httpx.Client, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return client.post(GENERATIONS, json=body, **kw)


def server_timing(response: httpx.Response) -> dict[str, float]:
    parts = [p.strip().split(";dur=") for p in response.headers["server-timing"].split(",")]
    return {name: float(ms) for name, ms in parts}


def batch_histogram(client: httpx.Client, headers: dict[str, str] | None = None) -> tuple[float, float, float]:
    """(batches, batches of one image, images in all batches) from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics", headers=headers).text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "harness_serve_batch_size"]
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    return (
        samples[("harness_serve_batch_size_count", None)],
        samples[("harness_serve_batch_size_bucket", "1.0")],
        samples[("harness_serve_batch_size_sum", None)],
    )


# -- ready ------------------------------------------------------------------------------------------------


def test_health_when_ready_reports_the_served_model(client: httpx.Client, reference: Any) -> None:
    from harness.serve.service import latents_sha256

    inputs, _ = reference
    r = client.get("/health")
    assert r.status_code == 200
    health = r.json()
    expected = {"status": "ready", "model": "tiny", "backend": "fake", "width": 64, "height": 64, "steps": 8}
    assert health.items() >= expected.items()
    assert (health["guidance_scale"], health["max_n"], health["max_batch_size"]) == (8.0, 4, 8)
    # The same latents as the in-process run: every sample's, in order.
    assert health["latents_sha256"] == latents_sha256(inputs.latents, inputs.qsl.total_count)


def test_health_answers_loading_before_the_model_is_ready() -> None:
    """The app before ServeState.ready(), on a real uvicorn: /health 503 loading, generations 503."""
    from harness.serve.app import ServeState, create_app
    from harness.serve.metrics import ServeMetrics
    from harness.serve.server import HttpServer, bind, url_of

    sock = bind("127.0.0.1", 0)
    http = HttpServer(create_app(ServeState(), ServeMetrics()), sock)
    http.start()
    try:
        base = url_of(sock, "127.0.0.1")
        r = httpx.get(f"{base}/health")
        assert (r.status_code, r.json()) == (503, {"status": "loading"})
        r = httpx.post(f"{base}{GENERATIONS}", json={"prompt": "a cat"})
        assert r.status_code == 503
        assert "loading" in r.json()["error"]["message"]
    finally:
        assert http.stop()


def test_the_socket_is_tcp_so_responses_go_out_without_nagles_delay() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; without it every response waited
    ~40 ms for a delayed ACK (measured: /health 46 ms at the median, 1.7 ms with it)."""
    from harness.serve.server import bind

    with bind("127.0.0.1", 0) as sock, socket.create_connection(sock.getsockname()):
        accepted, _ = sock.accept()
        with accepted:
            assert accepted.proto == socket.IPPROTO_TCP


# -- answers ----------------------------------------------------------------------------------------------


def test_b64_json_is_a_png_of_the_served_size_with_its_seed(client: httpx.Client) -> None:
    r = post(client, {"prompt": "a red bicycle", "n": 2, "size": "64x64"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert abs(body["created"] - time.time()) < 60
    assert len(body["data"]) == 2
    seeds = [item["seed"] for item in body["data"]]
    assert seeds[1] == seeds[0] + 1  # image k of a request: seed + k
    for item in body["data"]:
        image = Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))
        assert (image.format, image.size, image.mode) == ("PNG", (64, 64), "RGB")
    timing = server_timing(r)
    assert set(timing) == {"queue", "generate", "encode"}
    assert all(ms >= 0 for ms in timing.values())


def test_a_seed_gives_the_same_image_again(client: httpx.Client) -> None:
    first, again = (post(client, {"prompt": "a boat", "seed": 1234}) for _ in range(2))
    assert first.json()["data"][0]["seed"] == 1234
    assert first.json()["data"][0]["b64_json"] == again.json()["data"][0]["b64_json"]


def test_raw_is_the_uint8_images_with_their_shape(client: httpx.Client, reference: Any) -> None:
    _, backend = reference
    r = post(client, {"prompt": "a cat", "n": 3, "response_format": "raw", "sample_index": 2})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["x-image-shape"] == "3,64,64,3"
    images = np.frombuffer(r.content, dtype=np.uint8).reshape(3, 64, 64, 3)
    assert (images == backend.image_for(2, 64, 64)).all()  # all three from sample 2's latent
    assert "generate" in server_timing(r)


@pytest.mark.parametrize("index", [0, 5])
def test_an_image_by_sample_index_equals_the_in_process_backends(
    client: httpx.Client, reference: Any, index: int
) -> None:
    from harness.run.model import direct_batch

    inputs, backend = reference
    latent = inputs.latents.for_samples([index])
    body = {
        "prompt": inputs.prompts.texts[index],
        "negative_prompt": inputs.prompts.negative_prompts[index],
        "sample_index": index,
        "latents_sha256": hashlib.sha256(latent.tobytes()).hexdigest(),
        "response_format": "raw",
        "steps": 8,
        "guidance_scale": 8.0,
        "model": "tiny",
    }
    r = post(client, body)
    assert r.status_code == 200, r.text
    in_process = backend.generate(direct_batch(inputs.prompts, inputs.latents, [index])).images
    assert r.content == in_process.tobytes()
    png = post(client, {**body, "response_format": "b64_json"}).json()["data"][0]
    assert "seed" not in png  # the latent came from the sample, not a seed
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(png["b64_json"])))), in_process[0])


def test_concurrent_requests_share_a_server_side_batch(client: httpx.Client, url: str, reference: Any) -> None:
    _, backend = reference
    batches_before, singles_before, images_before = batch_histogram(client)
    together = threading.Barrier(8)  # the eight requests leave at once, well within sut.max_wait_ms (100 ms)

    def one(i: int) -> bool:
        with httpx.Client(base_url=url, timeout=30) as c:
            together.wait(timeout=30)
            r = post(c, {"prompt": f"prompt {i}", "sample_index": i, "response_format": "raw"})
            assert r.status_code == 200, r.text
            return r.content == backend.image_for(i, 64, 64).tobytes()  # its own image, out of a shared batch

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        own_images = list(pool.map(one, range(8)))
    assert own_images == [True] * 8
    batches, singles, images = batch_histogram(client)
    new_batches, new_singles = batches - batches_before, singles - singles_before
    assert images - images_before == 8  # every request's image went through a counted batch
    assert new_batches < 8, f"eight requests sent together ran in {new_batches:g} batches: none was shared"
    assert new_batches - new_singles >= 1  # at least one batch of more than one image


# -- bad requests -----------------------------------------------------------------------------------------

LONG = "x" * 1001
BAD_REQUESTS = [
    # (id, body (bytes: sent as is), status, param, words the message has)
    ("malformed-json", b'{"prompt": "a cat"', 400, None, "not valid JSON"),
    ("not-an-object", b'["a cat"]', 400, None, "JSON object"),
    ("missing-prompt", {"n": 1}, 400, "prompt", "required"),
    ("unknown-size", {"prompt": "a", "size": "1024x1024"}, 400, "size", "64x64"),
    ("n-above-limit", {"prompt": "a", "n": 5}, 400, "n", "1..4"),
    ("n-zero", {"prompt": "a", "n": 0}, 400, "n", "1..4"),
    ("n-a-string", {"prompt": "a", "n": "2"}, 400, "n", "integer"),
    ("prompt-too-long", {"prompt": LONG}, 400, "prompt", "at most 1000"),
    ("body-too-large", {"prompt": "x" * 5000}, 413, None, "4096"),
    ("wrong-steps", {"prompt": "a", "steps": 4}, 400, "steps", "served: 8"),
    ("wrong-guidance", {"prompt": "a", "guidance_scale": 7.5}, 400, "guidance_scale", "served: 8.0"),
    ("wrong-model", {"prompt": "a", "model": "sdxl"}, 400, "model", "'tiny'"),
    ("url-format", {"prompt": "a", "response_format": "url"}, 400, "response_format", "b64_json, raw"),
    ("unknown-field", {"prompt": "a", "quality": "hd"}, 400, "quality", "unknown field"),
    ("index-out-of-range", {"prompt": "a", "sample_index": 64}, 400, "sample_index", "0..63"),
    ("index-and-seed", {"prompt": "a", "sample_index": 1, "seed": 2}, 400, "seed", "one of them"),
    (
        "latents-mismatch",
        {"prompt": "a", "sample_index": 1, "latents_sha256": "0" * 64},
        409,
        "latents_sha256",
        "differ",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "param", "words"), [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS]
)
def test_a_bad_request_names_the_field_and_the_server_keeps_serving(
    client: httpx.Client, body: Any, status: int, param: str | None, words: str
) -> None:
    if isinstance(body, bytes):
        r = client.post(GENERATIONS, content=body, headers={"content-type": "application/json"})
    else:
        r = post(client, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == (param, None)
    assert words in error["message"]
    assert client.get("/health").status_code == 200


def test_a_streamed_body_over_the_limit_is_refused(client: httpx.Client) -> None:
    chunks = (b"x" * 1024 for _ in range(8))  # no Content-Length: chunked, counted while read
    r = client.post(GENERATIONS, content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "request_too_large"


def test_other_methods_and_paths_answer_the_json_error(client: httpx.Client) -> None:
    assert client.get(GENERATIONS).status_code == 405
    r = client.get("/v1/nothing")
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"


def test_after_the_bad_requests_a_good_one_is_answered_and_counted(client: httpx.Client) -> None:
    assert post(client, {"prompt": "still here", "response_format": "raw"}).status_code == 200
    text = client.get("/metrics").text
    assert 'harness_serve_requests_total{endpoint="/v1/images/generations",status="400"}' in text
    assert 'harness_serve_errors_total{type="latents_mismatch"}' in text
    assert "harness_serve_queue_seconds_bucket" in text and "harness_serve_generate_seconds_bucket" in text


# -- the key, a backend failure, shutdown -----------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(servers: tuple[ServeProcess, ServeProcess]) -> ServeProcess:
    return servers[1]


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic {key}", "{key}"])
def test_without_the_right_bearer_key_every_endpoint_but_health_is_401(
    keyed: ServeProcess, key: str, header: str | None
) -> None:
    headers = {} if header is None else {"authorization": header.format(key=key)}
    with httpx.Client(base_url=keyed.url, headers=headers, timeout=30) as c:
        assert c.get("/health").status_code == 200
        for r in (c.get("/metrics"), post(c, {"prompt": "a cat"})):
            assert r.status_code == 401, r.text
            assert r.json()["error"]["type"] == "authentication_error"


def test_a_backend_failure_answers_500_and_the_server_keeps_serving(keyed: ServeProcess, key: str) -> None:
    with httpx.Client(base_url=keyed.url, headers={"authorization": f"Bearer {key}"}, timeout=30) as c:
        failed = post(c, {"prompt": "a cat"})  # the backend's first call raises (fail_at_call=1)
        assert failed.status_code == 500
        assert "injected failure" in failed.json()["error"]["message"]
        assert post(c, {"prompt": "a cat"}).status_code == 200
        assert c.get("/health").status_code == 200
        assert 'harness_serve_errors_total{type="backend"} 1.0' in c.get("/metrics").text


def test_shutdown_answers_queued_requests_503_and_the_key_is_written_nowhere(keyed: ServeProcess, key: str) -> None:
    headers = {"authorization": f"Bearer {key}"}

    def one(i: int) -> int:
        with httpx.Client(base_url=keyed.url, headers=headers, timeout=30) as c:
            return post(c, {"prompt": f"queued {i}", "response_format": "raw"}).status_code

    def queued(c: httpx.Client) -> float:
        line = next(x for x in c.get("/metrics").text.splitlines() if x.startswith("harness_serve_queued_images "))
        return float(line.split()[1])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one, i) for i in range(4)]
        # One image generating (300 ms each, one at a time), at least two queued behind it: stop now.
        with httpx.Client(base_url=keyed.url, headers=headers, timeout=30) as c:
            deadline = time.monotonic() + 30
            while queued(c) < 2:
                assert time.monotonic() < deadline, "the requests never queued"
                time.sleep(0.01)
        start = time.monotonic()
        assert keyed.stop() == 0
        stopped_s = time.monotonic() - start
        codes = sorted(f.result(timeout=30) for f in futures)
    assert stopped_s < 10
    assert 503 in codes and 200 in codes and set(codes) <= {200, 503}, codes
    log = keyed.log_text()
    assert "backend closed" in log
    # The key: in no log line and no file the server wrote (its working directory holds its log).
    assert key not in log
    folder = keyed.log_path.parent
    for path in folder.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


# -- the command's refusals: one line, exit code 2, before anything binds ---------------------------------


def serve_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from harness.commands.serve import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    capsys.readouterr()
    try:
        code = main(argv)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        (["--host", "0.0.0.0"], {}, "not a loopback address"),
        (["--host", "example.com"], {}, "--api-key-env NAME"),
        (["--host", "0.0.0.0", "--api-key-env", "HARNESS_TEST_NO_SUCH_VAR"], {}, "is not set"),
        (["--api-key-env", KEY_ENV], {KEY_ENV: ""}, "is empty"),
        (["--backend", "nope"], {}, "unknown backend 'nope'"),
        (["--set", "serve.max_n=0"], {}, "serve.max_n"),
        (["--set", "run.scenario=Offline"], {}, "leave run.scenario unset"),
        (["--port", "70000"], {}, "0..65535"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    argv: list[str],
    env: dict[str, str],
    words: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HARNESS_TEST_NO_SUCH_VAR", raising=False)
    code, err = serve_main(["--backend", "fake", *argv], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err


def test_a_port_in_use_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = serve_main(["--backend", "fake", "--port", str(port)], capsys)
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_the_key_is_not_in_the_refusal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-" + secrets.token_hex(8)
    monkeypatch.setenv(KEY_ENV, secret)
    code, err = serve_main(["--backend", "nope", "--host", "0.0.0.0", "--api-key-env", KEY_ENV], capsys)
    assert code == 2 and "unknown backend" in err and secret not in err


# -- the tiny model (the real pipeline) -------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_model_images_by_sample_index_equal_the_in_process_runs(
    harness_cache: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    """The real tiny pipeline: /health says loading while it loads, then the image of sample i over HTTP
    is byte-equal to the in-process backend's for the run's batch of sample i (its QSL, pre-tokenized)."""
    from harness.config import resolve_config
    from harness.run.model import make_backend, prepare_inputs

    server = start_serve(["--model", "tiny", "--backend", "diffusers-eager"], log_path=tmp_path / "serve.log")
    try:
        seen = set()
        while not server.url:
            line = next((x for x in server.log_text().splitlines() if x.startswith("listening on ")), "")
            if line:
                r = httpx.get(line.split()[2].rstrip(";") + "/health")
                seen.add((r.status_code, json.dumps(r.json())))
                if r.status_code == 200:
                    break
            assert server.process.poll() is None, server.log_text()
            time.sleep(0.05)
        assert (503, json.dumps({"status": "loading"})) in seen
        server.wait_ready()

        cfg = resolve_config("tiny", None, {"run.backend": "diffusers-eager", "run.scenario": "Server"}, [])
        inputs = prepare_inputs(cfg)
        backend = make_backend(cfg, inputs.spec)
        backend.load()
        inputs.qsl.set_preprocessor(getattr(backend, "preprocess_prompts", None))
        inputs.qsl.load_samples([0, 3])
        try:
            for index in (0, 3):
                latent = inputs.latents.for_samples([index])
                body = {
                    "prompt": inputs.prompts.texts[index],
                    "negative_prompt": inputs.prompts.negative_prompts[index],
                    "sample_index": index,
                    "latents_sha256": hashlib.sha256(latent.tobytes()).hexdigest(),
                    "response_format": "raw",
                }
                r = httpx.post(server.url + GENERATIONS, json=body, timeout=120)
                assert r.status_code == 200, r.text
                assert r.content == backend.generate(inputs.qsl.batch([index])).images.tobytes()
        finally:
            backend.close()
        assert server.stop() == 0
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_loading_ends_the_server_with_130(harness_cache: Path, tmp_path: Path, sig: int) -> None:
    server = start_serve(["--model", "tiny", "--backend", "diffusers-eager"], log_path=tmp_path / "serve.log")
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in server.log_text():
            assert time.monotonic() < deadline and server.process.poll() is None, server.log_text()
            time.sleep(0.02)
        server.process.send_signal(sig)
        assert server.process.wait(60) == 130, server.log_text()
        assert "error: interrupted while loading" in server.log_text()
        assert "http://127.0.0.1" not in server.log_text().replace("listening on http://127.0.0.1", "")
    finally:
        server.stop()
