"""Terminal output: a progress bar on stderr while LoadGen runs, a summary table at the end."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table


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


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_summary(summary: dict[str, Any]) -> None:
    console = Console()
    table = Table(
        title=f"{summary['model']} · {summary['backend']} · {summary['scenario']} · {summary['mode']}",
        show_header=False,
    )
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("status", summary["status"])
    table.add_row("samples/s", _fmt(summary["samples_per_second"], 3))
    lat = summary["latency_ms"]
    if lat:
        table.add_row(
            "latency ms p50/p90/p95/p99/max",
            " / ".join(_fmt(lat.get(k), 1) for k in ("p50", "p90", "p95", "p99", "max")),
        )
    table.add_row("batches (size: count)", ", ".join(f"{k}: {v}" for k, v in summary["batch_sizes"].items()) or "-")
    table.add_row("samples completed", str(summary["samples_completed"]))
    table.add_row("LoadGen result", _fmt(summary["loadgen"]["result_validity"]))
    table.add_row("valid for submission", "yes" if summary["valid_for_submission"] else "no")
    for reason in summary["submission_blockers"][:6]:
        table.add_row("", f"· {reason}")
    table.add_row("run directory", summary["run_dir"])
    console.print(table)
