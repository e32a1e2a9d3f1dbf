"""uvicorn on its own thread, on a socket bound before the model loads (so `--port 0` is known and
/health can answer "loading"); the main thread loads the model and handles Ctrl-C and SIGTERM."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from harness.errors import ConfigError

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 30.0  # a request in a running batch gets this long to finish on shutdown


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); a refusal is one ConfigError line."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (base_events._set_nodelay),
    # and without it Nagle and delayed ACKs add ~40 ms to every response (headers and body are two writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    return f"http://{shown}:{port}"


class HttpServer:
    """uvicorn serving `app` on `sock`, in a daemon thread."""

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        config = uvicorn.Config(
            app,
            log_config=None,  # our logging set-up (harness/commands/_shared.py) stays as it is
            access_log=False,
            timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
        )

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("the HTTP server did not start (see the log lines above)")
            time.sleep(0.01)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> bool:
        """Stop accepting, let the requests in flight finish (at most GRACEFUL_SHUTDOWN_S); True if stopped."""
        self._server.should_exit = True
        self._thread.join(GRACEFUL_SHUTDOWN_S + 5.0)
        self._sock.close()
        return not self._thread.is_alive()
