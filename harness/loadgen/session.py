"""A LoadGen session: the SUT and QSL handles LoadGen constructs, destroyed when the session ends.

    with LoadGenSession(sut.issue_queries, sut.flush_queries, qsl) as session:
        thread = session.start(settings, log_settings, audit_config)
        ...  # watch the thread

or, for a SUT LoadGen calls without Python (the native SUT, harness/sut/native_sut.py), its ready handle:
`LoadGenSession(None, None, qsl, ready_sut=ReadySut(handle, owner))`.

LoadGen's StartTest blocks, so `start` runs it on a daemon thread. The handles are destroyed on the way
out, whatever happened, unless LoadGen's thread is still running: destroying what a running test uses
would crash the process, which then exits hard instead (the run is reported with `loadgen_alive`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from harness.loadgen.module import lg

log = logging.getLogger(__name__)


class SampleLibrary(Protocol):
    """What LoadGen's ConstructQSL needs from a query sample library."""

    @property
    def total_count(self) -> int: ...

    @property
    def performance_count(self) -> int: ...

    def load_samples(self, indices: list[int]) -> None: ...

    def unload_samples(self, indices: list[int]) -> None: ...


@dataclass(frozen=True)
class ReadySut:
    """A SUT built outside LoadGen's Python module: a mlperf::SystemUnderTest* as an int, which
    StartTestWithLogSettings casts back, and the Python object that owns it (kept alive while LoadGen may
    still call it)."""

    handle: int
    owner: object


# Owners of ready SUTs whose LoadGen thread never ended: freeing one would crash the process under
# LoadGen's feet, so they live until the process exits (hard, in that case).
_KEPT_UNTIL_EXIT: list[object] = []


class LoadGenSession:
    def __init__(
        self,
        issue_queries: Callable[[list[Any]], None] | None,
        flush_queries: Callable[[], None] | None,
        qsl: SampleLibrary,
        ready_sut: ReadySut | None = None,
    ) -> None:
        if (ready_sut is None) == (issue_queries is None or flush_queries is None):
            raise ValueError("LoadGenSession needs either both callbacks or a ready SUT, not both")
        self._issue_queries = issue_queries
        self._flush_queries = flush_queries
        self._ready_sut = ready_sut
        self._qsl = qsl
        self.sut_handle: Any = None
        self.qsl_handle: Any = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> LoadGenSession:
        if self._ready_sut is not None:
            self.sut_handle = self._ready_sut.handle
        else:
            self.sut_handle = lg.ConstructSUT(self._issue_queries, self._flush_queries)
        try:
            q = self._qsl
            self.qsl_handle = lg.ConstructQSL(q.total_count, q.performance_count, q.load_samples, q.unload_samples)
        except BaseException:
            self._destroy_sut()
            raise
        return self

    def _destroy_sut(self) -> None:
        if self.sut_handle is not None and self._ready_sut is None:  # a ready SUT belongs to its owner
            lg.DestroySUT(self.sut_handle)
        self.sut_handle = None

    def start(self, settings: Any, log_settings: Any, audit_config: str) -> threading.Thread:
        """StartTestWithLogSettings on its own (daemon) thread, started; the caller watches it."""
        if self.sut_handle is None:
            raise RuntimeError("LoadGenSession.start outside its `with` block")
        self.thread = threading.Thread(
            target=lg.StartTestWithLogSettings,
            args=(self.sut_handle, self.qsl_handle, settings, log_settings, audit_config),
            name="loadgen",
            daemon=True,
        )
        self.thread.start()
        return self.thread

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.running:  # LoadGen still uses the handles: leave them to the process's hard exit
            log.warning("LoadGen's thread is still running; its SUT and QSL are not destroyed")
            if self._ready_sut is not None:
                _KEPT_UNTIL_EXIT.append(self._ready_sut.owner)
            return
        if self.qsl_handle is not None:
            lg.DestroyQSL(self.qsl_handle)
            self.qsl_handle = None
        self._destroy_sut()
