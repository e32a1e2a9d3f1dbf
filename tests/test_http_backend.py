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
    *,
    status: int = 200,
    ok_first: int = 0,
    delay_s: float = 0.0,
    health: dict[str, Any] | None = None,
    key: str = "",
    loading_s: float = 0.0,
) -> tuple[Starlette, list[dict[str, Any]]]:
    """The serve protocol with the fake backend's images (a function of sample_index); `status` other than
    200 answers every generation but the first `ok_first` with that error, `delay_s` answers late, /health
    says "loading" (503) for the first `loading_s`. Returns the app and the list of request bodies it received."""
    received: list[dict[str, Any]] = []
    started = time.monotonic()

    async def health_route(request: Request) -> Response:
        if time.monotonic() - started < loading_s:
            return JSONResponse({"status": "loading"}, 503)
        return JSONResponse({"status": "ready", "backend": "fake", **(health or TINY)})

    async def generate(request: Request) -> Response:
        if key and request.headers.get("authorization") != f"Bearer {key}":
            return JSONResponse({"error": {"message": "wrong key", "type": "auth", "param": None}}, 401)
        body = await request.json()
        received.append(body)
        if delay_s:
            await asyncio.sleep(delay_s)
        if status != 200 and len(received) > ok_first:
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


def test_load_waits_for_a_server_still_loading_only_when_asked() -> None:
    app, _ = protocol_app(loading_s=0.6)
    with serving(app) as url:
        with pytest.raises(BackendError, match="not ready: GET .*/health answered 503"):
            loaded(url)
        backend = loaded(url, ready_timeout_s=10)
        backend.warmup(batch((0,)))
        backend.close()
    # time to first image counts from the first contact, the server's loading included
    first = backend.endpoint_stats().first_image_s
    assert first is not None and first >= 0.3


def test_an_unreachable_url_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendError, match=f"cannot reach the service at {url}"):
        loaded(url)


# -- runs through the CLI ---------------------------------------------------------------------------


def test_a_bad_option_is_one_line_and_exit_2_before_anything_slow(run_cli_in_process: Any) -> None:
    result = run_cli_in_process("--backend", "http", "--set", "backend.api=grpc")
    assert result.returncode == 2
    assert "backend.api must be one of harness, openai, got 'grpc'" in result.stderr
    assert "prepare inputs" not in result.stderr


def test_an_unreachable_url_ends_the_run_with_exit_2_before_loadgen(run_cli_in_process: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli_in_process("--backend", "http", "--scenario", "Offline", "--set", f"backend.url={url}")
    assert result.returncode == 2, result.stderr
    assert f"cannot reach the service at {url}" in result.stderr
    assert result.run_dir is None or not (result.run_dir / "mlperf_log_detail.txt").exists()


# -- against a real `python -m harness serve` (slow) ----------------------------------------------


def http_run(run_cli: Any, url: str, *args: str, timeout: float = 240) -> Any:
    return run_cli("--backend", "http", "--set", f"backend.url={url}", *args, timeout=timeout)


@pytest.fixture(scope="module")
def fake_server(harness_cache: Any) -> Iterator[str]:
    """serve with the fake backend (the model does not matter), 50 ms per batch, batches up to 8: at most
    160 images/s, so that an Offline run of 220 samples lasts LoadGen's 1 s minimum."""
    from tests.serve_fixture import running_server

    args = ["--backend", "fake", "--set", "backend.latency_ms=50", "--set", "sut.max_wait_ms=10"]
    with running_server(args) as url:
        yield url


def serve_metric(url: str, name: str) -> dict[tuple[str, str | None], float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics").text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == name]
    return {(s.name, s.labels.get("le")): s.value for s in family.samples}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["SingleStream", "Offline", "Server"])
def test_every_scenario_runs_through_serve(run_cli: Any, fake_server: str, scenario: str) -> None:
    short = ("--set", "loadgen.min_duration_ms=1000", "--set", "backend.concurrency=8")
    if scenario == "Offline":  # 550 samples: VALID (they last the 1 s minimum) below 500 images/s
        short += ("--set", "loadgen.offline_expected_qps=500")
    result = http_run(run_cli, fake_server, "--scenario", scenario, *short)
    assert result.returncode == 0, result.stderr
    summary = result.summary()
    assert summary["status"] == "ok" and summary["loadgen"]["result_validity"] == "VALID", summary["loadgen"]
    endpoint = summary["endpoint"]
    assert endpoint["errors"] == 0 and endpoint["responses_by_status"] == {"200": endpoint["requests"]}
    assert endpoint["samples"] >= summary["samples_completed"]  # + the one warm image after the run
    split = endpoint["latency_split_ms"]
    assert split["server_generate"]["p50"] >= 50.0  # the fake backend's 50 ms, as Server-Timing reported it
    parts = sum(split[p]["mean"] for p in ("server_queue", "server_generate", "server_encode", "client_decode"))
    assert parts + split["client_other"]["mean"] == pytest.approx(split["e2e"]["mean"], rel=0.01)
    workers = {w["name"] for w in summary["workers"]}
    assert len(workers) > 1 or scenario == "SingleStream"  # the 8 workers share the backend


@pytest.mark.slow
def test_64_requests_in_flight_and_server_side_batches(run_cli: Any, harness_cache: Any) -> None:
    """Server scenario, one sample per request, 64 workers on one client; the server batches them."""
    from tests.serve_fixture import running_server

    serve = ["--backend", "fake", "--set", "backend.latency_ms=300", "--set", "sut.max_batch_size=64"]
    with running_server([*serve, "--set", "sut.max_wait_ms=50", "--set", "serve.max_n=1"]) as url:
        result = http_run(
            run_cli,
            url,
            "--scenario",
            "Server",
            "--set",
            "backend.concurrency=64",
            "--set",
            "sut.max_batch_size=1",
            "--set",
            "loadgen.server_target_qps=150",
            "--set",
            "loadgen.min_query_count=600",
        )
        batches = serve_metric(url, "harness_serve_batch_size")
    assert result.returncode == 0, result.stderr
    endpoint = result.summary()["endpoint"]
    assert endpoint["max_in_flight"] == 64 and endpoint["errors"] == 0, endpoint
    assert batches[("harness_serve_batch_size_count", None)] > batches[("harness_serve_batch_size_bucket", "1.0")]


@pytest.mark.slow
def test_accuracy_images_are_byte_equal_to_the_in_process_run(run_cli: Any, harness_cache: Any) -> None:
    from tests.serve_fixture import running_server

    common = ("--model", "tiny", "--mode", "accuracy", "--scenario", "Offline", "--set", "dataset.count=8")
    local = run_cli(*common, "--backend", "diffusers-eager")
    assert local.returncode == 0, local.stderr
    with running_server(["--model", "tiny", "--backend", "diffusers-eager"]) as url:
        remote = http_run(run_cli, url, *common, "--set", "backend.response_format=b64_json")
    assert remote.returncode == 0, remote.stderr

    def images(run: Any) -> dict[int, str]:
        entries = json.loads((run.run_dir / "mlperf_log_accuracy.json").read_text())
        return {e["qsl_idx"]: e["data"] for e in entries}

    assert len(images(local)) == 8 and images(remote) == images(local)
    assert remote.summary()["endpoint"]["comparable_with_mlperf_accuracy"] is True


@pytest.mark.slow
def test_a_server_killed_mid_run_ends_the_run_promptly_with_the_samples(harness_cache: Any, tmp_path: Any) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.serve_fixture import ROOT, serve_process

    with serve_process(["--backend", "fake", "--set", "backend.latency_ms=100"]) as server:
        env = {**os.environ, "HARNESS_CACHE_DIR": str(harness_cache), "PYTHONPATH": str(ROOT)}
        args = ["--backend", "http", "--set", f"backend.url={server.url}", "--set", "backend.timeout_s=5"]
        client = subprocess.Popen(
            [sys.executable, "-m", "harness", "--output-dir", str(tmp_path), "--no-progress", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 120
        while serve_metric(server.url, "harness_serve_images").get(("harness_serve_images_total", None), 0) < 30:
            assert time.monotonic() < deadline and client.poll() is None, "the run did not get going"
            time.sleep(0.1)
        server.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = client.communicate(timeout=60)
        ended_s = time.monotonic() - killed
    assert client.returncode == 1, stderr
    assert ended_s < 5 + 10, ended_s  # backend.timeout_s, and the run's drain
    assert "failed on samples [" in stderr and "connection failed" in stderr


@pytest.mark.slow
def test_500_responses_fail_the_run_with_the_sample_ids(run_cli_in_process: Any) -> None:
    app, received = protocol_app(status=500, ok_first=3)  # the warm-up passes, the run's requests fail
    with serving(app) as url:
        result = run_cli_in_process(
            "--backend",
            "http",
            "--scenario",
            "SingleStream",
            "--set",
            f"backend.url={url}",
            "--set",
            "backend.retries=1",
        )
    assert result.returncode == 1, result.stderr
    assert "failed on samples [" in result.stderr and "HTTP 500: injected (after 2 attempts)" in result.stderr
    assert result.summary()["endpoint"]["responses_by_status"] == {"200": 3, "500": len(received) - 3}


@pytest.mark.slow
def test_the_api_key_is_written_nowhere(run_cli: Any, harness_cache: Any, tmp_path: Any, monkeypatch: Any) -> None:
    from tests.serve_fixture import serve_process

    key = "sk-test-9f8e7d6c5b4a"
    monkeypatch.setenv("CLIENT_KEY", key)
    with serve_process(["--backend", "fake", "--api-key-env", "SERVE_KEY"], env={"SERVE_KEY": key}) as server:
        wrong = http_run(run_cli, server.url, "--scenario", "SingleStream")  # no key: 401 at warm-up, exit 2
        result = http_run(run_cli, server.url, "--scenario", "SingleStream", "--set", "backend.api_key_env=CLIENT_KEY")
        server_log = server.log_text()
    assert wrong.returncode == 2 and "HTTP 401" in wrong.stderr
    assert result.returncode == 0, result.stderr
    assert result.summary()["endpoint"]["responses_by_status"].get("401") is None
    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.name == "summary.json" for p in written)
    for path in written:
        assert key.encode() not in path.read_bytes(), path
    assert key not in result.stdout + result.stderr + wrong.stderr + server_log


@pytest.mark.slow
def test_api_openai_marks_the_run_not_comparable(run_cli: Any, fake_server: str) -> None:
    result = http_run(
        run_cli,
        fake_server,
        "--mode",
        "accuracy",
        "--scenario",
        "Offline",
        "--set",
        "backend.api=openai",
        "--set",
        "dataset.count=8",
    )
    assert result.returncode in (0, 3), result.stderr
    summary = result.summary()
    assert summary["endpoint"]["comparable_with_mlperf_accuracy"] is False
    assert any("not comparable with MLPerf accuracy" in b for b in summary["submission_blockers"])
    assert "not comparable with MLPerf accuracy" in result.stderr


# -- summary.json and the report --------------------------------------------------------------------


def test_the_endpoint_record_round_trips_and_the_report_shows_it_for_http_runs_only(tmp_path: Any) -> None:
    from harness.report.collect import RunData
    from harness.report.endpoint_section import endpoint_section
    from harness.run.summary import EndpointRecord, RunSummary

    record = EndpointRecord(
        url="http://127.0.0.1:1",
        api="openai",
        comparable_with_mlperf_accuracy=False,
        not_comparable_reason="not comparable with MLPerf accuracy (prompt only)",
        requests=5,
        responses_by_status={"200": 4, "500": 1},
        errors=1,
        latency_split_ms={"e2e": {"mean": 10.0, "p50": 9.0, "p99": 20.0, "max": 21.0}, "client_other": {"mean": 4.0}},
    )
    summary = RunSummary(status="ok", backend="http", endpoint=record)
    assert RunSummary.from_json(json.loads(json.dumps(summary.to_json()))) == summary
    assert "endpoint" not in RunSummary(status="ok").to_json()  # other backends: no key at all

    def run(s: RunSummary) -> RunData:
        return RunData(label="r", path=tmp_path, summary=s, manifest={}, config={}, accuracy={})

    assert endpoint_section([run(RunSummary(status="ok"))]) is None
    section = endpoint_section([run(summary)])
    assert section is not None and "not comparable with MLPerf accuracy" in section.alerts[0]
    (overview, split) = section.tables
    assert overview.rows[0]["responses_by_status"] == "200: 4, 500: 1"
    assert [row["share_of_mean"] for row in split.rows] == [1.0, 0.4]


@pytest.mark.slow
def test_compare_puts_an_in_process_backend_and_an_endpoint_side_by_side(
    harness_cache: Any, tmp_path: Any, fake_server: str
) -> None:
    """compare's LABEL=BACKEND and --backend-set LABEL:KEY=VALUE: no change to compare was needed."""
    import os
    import subprocess
    import sys

    from tests.serve_fixture import ROOT

    args = ["--backends", "fake,endpoint=http", "--reference", "fake", "--scenario", "Offline"]
    args += ["--backend-set", f"endpoint:backend.url={fake_server}", "--parity-samples", "4"]
    args += ["--set", "loadgen.min_duration_ms=1000", "--output-dir", str(tmp_path)]
    env = {**os.environ, "HARNESS_CACHE_DIR": str(harness_cache), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "compare", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    (compare_json,) = tmp_path.glob("*/compare.json")
    rows = {r["backend"]: r for r in json.loads(compare_json.read_text())["results"]}
    assert rows["endpoint"]["status"] == "ok" and rows["endpoint"]["device"] == "remote"
    assert "server_generate" in rows["endpoint"]["timing"]["stages"]
    assert rows["endpoint"]["parity"]["identical"] is True  # the fake images, a function of the sample index
