"""Terminal output: a progress bar on stderr while LoadGen runs, a heartbeat for long child runs, `fmt` for
table cells (the summary table at the end is harness/commands/_summary_table.py)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Heartbeat:
    """While a long child run goes on: without a terminal (a CI log, a pipe), a plain `still running` line on
    stderr every `interval_s`, so that a log never sits silent for minutes; on a terminal, nothing here (the
    caller prints its own line when the run ends)."""

    interval_s = 10.0

    def __init__(self, label: str, interval_s: float | None = None, stream: Any = None) -> None:
        self.label = label
        self.interval = self.interval_s if interval_s is None else interval_s
        self.stream = stream
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        stream = self.stream or sys.stderr
        if not stream.isatty():
            self._thread = threading.Thread(target=self._beat, args=(stream,), name="heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self, stream: Any) -> None:
        start = time.perf_counter()
        while not self._stop.wait(self.interval):
            print(f"{self.label}: still running, {time.perf_counter() - start:.0f} s", file=stream, flush=True)


class Progress:
    """Completed samples against the expected total (unknown for Server and SingleStream)."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._bar.add_task(label, total=None)

    def __enter__(self) -> Progress:
        if self.enabled:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.stop()

    def update(self, completed: int, total: int | None) -> None:
        if self.enabled:
            self._bar.update(self._task, completed=completed, total=total)


def fmt(value: Any, digits: int = 2) -> str:
    """A figure for a table cell: "-" for missing, floats to `digits` places."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)
