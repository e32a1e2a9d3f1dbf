"""`python -m harness serve`: load and warm up one backend, then serve it over HTTP (docs/serve.md).

The configuration is a run's (`--model`, `--backend`, `--config`, `--set`, resolved by the same layers),
checked before anything loads; bad input is one line and exit code 2. The socket is bound first (so
`--port 0` has its port and /health answers "loading"), then the backend loads and warms up; the URL is
printed on stdout once the server is ready. Ctrl-C or SIGTERM: queued requests get 503, the batch in
progress finishes, the backend is closed, exit code 0.

Exit codes: 0 stopped by Ctrl-C/SIGTERM; 1 the HTTP server died; 2 bad input; 130 interrupted while loading.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from backends.registry import BACKENDS
from harness.commands._shared import configure_logging, fail
from harness.commands.run import flag_overrides
from harness.config import RunConfig, available_models, resolve_config
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.workers.in_process import Worker

log = logging.getLogger("harness.serve")

EPILOG = """\
examples:
  python -m harness serve --backend fake                      instant images, for testing clients
  python -m harness serve --model tiny --port 0               the tiny model on a free port
  HARNESS_KEY=secret python -m harness serve --host 0.0.0.0 --api-key-env HARNESS_KEY

exit codes: 0 stopped (Ctrl-C or SIGTERM), 1 the HTTP server died, 2 bad input, 130 interrupted while loading
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness serve",
        description="Serve one loaded backend over HTTP: POST /v1/images/generations (OpenAI Images API), "
        "GET /health, GET /metrics (docs/serve.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="tiny", help=f"model config: {', '.join(available_models())}. Default: tiny")
    p.add_argument("--model-path", metavar="DIR", help="local diffusers pipeline folder, as for a run")
    p.add_argument("--backend", help=f"{', '.join(sorted(BACKENDS))}. Default: the model config's (diffusers-eager)")
    p.add_argument("--config", metavar="FILE.toml", help="a TOML file layered over the model config, as for a run")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, as for a run: e.g. --set sut.max_batch_size=4 --set serve.max_n=4",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind. Default: 127.0.0.1 (loopback)")
    p.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (logged). Default: 8000")
    p.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="require 'Authorization: Bearer <key>' on every endpoint but /health, the key read from the "
        "environment variable NAME; needed for any host but loopback",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    # The run flags the server does not take, as flag_overrides reads them: it batches as Server does.
    p.set_defaults(scenario="Server", output_dir=None, user_conf=None, no_progress=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if not args.verbose:
        logging.getLogger("uvicorn").setLevel(logging.WARNING)
    from harness.serve.auth import read_api_key
    from harness.serve.server import bind
    from harness.serve.service import check_config

    try:
        if not 0 <= args.port <= 65535:
            raise HarnessError(f"--port {args.port} is out of range; allowed: 0..65535 (0: a free port)")
        api_key = read_api_key(args.api_key_env, args.host)
        cfg = resolve_config(args.model, args.config, flag_overrides(args, "performance"), args.sets)
        check_config(cfg)
        sock = bind(args.host, args.port)
    except HarnessError as exc:
        return fail(str(exc))
    return _serve(cfg, sock, args.host, api_key)


_stop_requested = threading.Event()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM stops the server as Ctrl-C does. The event too: a library's bare `except:` around an import
    # (seen while the model loads) can swallow the KeyboardInterrupt; the event is checked once loading ends.
    _stop_requested.set()
    raise KeyboardInterrupt


def _force_exit(signum: int, frame: FrameType | None) -> None:
    os._exit(130)  # a second signal while stopping: the stop is bounded, but the user wants out now


def _serve(cfg: RunConfig, sock: socket.socket, host: str, api_key: str) -> int:
    from harness.serve.app import ServeState, create_app
    from harness.serve.generator import Generator
    from harness.serve.metrics import ServeMetrics
    from harness.serve.server import GRACEFUL_SHUTDOWN_S, HttpServer, url_of
    from harness.serve.service import load

    metrics = ServeMetrics()
    state = ServeState()
    http = HttpServer(create_app(state, metrics, api_key), sock)
    url = url_of(sock, host)
    signals = (signal.SIGINT, signal.SIGTERM)
    _stop_requested.clear()
    previous = {sig: signal.signal(sig, _interrupt) for sig in signals}
    workers: list[Worker] = []
    generator: Generator | None = None
    code = 0
    try:
        http.start()
        log.info(
            "listening on %s; loading %s (%s); /health answers 503 until ready", url, cfg.model.name, cfg.run.backend
        )
        start = time.perf_counter()
        served, workers = load(cfg)
        if _stop_requested.is_set():
            raise KeyboardInterrupt
        generator = Generator(workers, served.policy, metrics)
        state.ready(served, generator)
        log.info(
            "ready in %.1f s: %s (%s) %s, batches of up to %d images waiting up to %g ms%s",
            time.perf_counter() - start,
            served.name,
            served.backend,
            served.size,
            served.policy.max_batch_size,
            served.policy.max_wait_ns / 1e6,
            ", bearer key required" if api_key else "",
        )
        print(url, flush=True)
        while http.alive and not _stop_requested.is_set():
            time.sleep(0.2)
        if _stop_requested.is_set():
            raise KeyboardInterrupt
        code = fail("the HTTP server stopped unexpectedly (see the log lines above)", 1)
    except KeyboardInterrupt:
        if generator is None:
            code = fail("interrupted while loading", 130)
        else:
            log.info("stopping: queued requests get 503, the batch in progress finishes")
    except HarnessError as exc:  # the model could not load: bad input found while loading
        code = fail(str(exc))
    finally:
        for sig in signals:
            signal.signal(sig, _force_exit)
        state.closing = True
        if generator is not None:
            generator.close()
        stopped = http.stop()
        if generator is not None and not generator.join(GRACEFUL_SHUTDOWN_S):
            log.warning("a generation thread was still running a batch after %.0f s", GRACEFUL_SHUTDOWN_S)
        for worker in workers:
            worker.close()
        if workers:
            log.info("stopped%s; backend closed", "" if stopped else " (the HTTP thread did not finish)")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.stdout.flush()
    return code
