"""Trends from the run history (`python -m harness report --history`): each headline metric over time per
(model, backend, scenario, hardware), with the baseline band, in the same self-contained report.

The baseline of a series is its last BASELINE_RUNS LoadGen-VALID runs before the newest one (what
`gate --baseline last:5` compares against): the band is their min..max, the dashed line their median.
INVALID runs are drawn hollow and named in the section's alerts: LoadGen did not accept them as results.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.history.db import history_url, open_history, shown
from harness.history.query import list_runs
from harness.history.schema import HEADLINE
from harness.report.document import Document, Figure, Section, Table

log = logging.getLogger(__name__)

BASELINE_RUNS = 5
GROUP = ("model", "backend", "scenario", "hardware")


def database_url(where: str) -> str:
    """`--history` takes a database URL, or a folder holding history.sqlite."""
    return where if "://" in where else history_url("", where)


def history_section(rows: Sequence[Mapping[str, Any]], source: str) -> Section:
    section = Section("Run history")
    if not rows:
        section.notes.append(f"no runs in the history ({source})")
        return section
    section.notes.append(
        f"{len(rows)} runs from {source}. Band: min..max of the last {BASELINE_RUNS} VALID runs before the newest "
        "of each series (the gate's last:5 baseline), dashed: their median; hollow points: LoadGen INVALID."
    )
    for r in rows:
        if r["result_validity"] != "VALID":
            reason = f" ({r['invalid_reason']})" if r["invalid_reason"] else ""
            section.alerts.append(f"{r['run_id']}: LoadGen {r['result_validity'] or 'no result'}{reason}")
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in GROUP), []).append(r)
    for n, (key, series) in enumerate(sorted(groups.items(), key=lambda kv: [str(k) for k in kv[0]])):
        png = _trend_figure(series)
        if png is not None:
            title = " / ".join(str(k) for k in key)
            section.figures.append(Figure(f"history_{n + 1}", f"Trend: {title}", png, caption=f"{len(series)} runs"))
    columns = ("run_id", "started_at", *GROUP, "git_commit", "result_validity", *(m for m, _, _ in HEADLINE))
    section.tables.append(
        Table(
            "history_runs",
            "Runs in the history",
            columns,
            tuple({c: _cell(r.get(c)) for c in columns} for r in rows),
        )
    )
    return section


def baseline_band(series: Sequence[Mapping[str, Any]], column: str) -> tuple[float, float, float] | None:
    """(min, median, max) of `column` over the last BASELINE_RUNS VALID runs before the newest run."""
    import numpy as np

    before = [r[column] for r in series[:-1] if r["result_validity"] == "VALID" and r[column] is not None]
    values = before[-BASELINE_RUNS:]
    if not values:
        return None
    return float(min(values)), float(np.median(values)), float(max(values))


def _trend_figure(series: Sequence[Mapping[str, Any]]) -> bytes | None:
    metrics = [(m, label) for m, label, _ in HEADLINE if any(r[m] is not None for r in series)]
    if not metrics:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), 1, figsize=(7.0, 2.2 * len(metrics)), sharex=True, squeeze=False)
    try:
        for ax, (column, label) in zip(axes[:, 0], metrics, strict=True):
            points = [(r["started_at"], r[column], r["result_validity"] == "VALID") for r in series]
            valid = [(t, v) for t, v, ok in points if ok and v is not None]
            invalid = [(t, v) for t, v, ok in points if not ok and v is not None]
            if valid:
                ax.plot([p[0] for p in valid], [p[1] for p in valid], "o-", color="C0", label="VALID")
            if invalid:
                ax.plot([p[0] for p in invalid], [p[1] for p in invalid], "o", mfc="none", color="C3", label="INVALID")
            band = baseline_band(series, column)
            if band is not None:
                ax.axhspan(band[0], band[2], color="C2", alpha=0.2, label=f"baseline (last {BASELINE_RUNS})")
                ax.axhline(band[1], color="C2", linestyle="--", linewidth=1)
            ax.set_ylabel(label, fontsize="small")
            ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize="x-small", loc="best")
        fig.autofmt_xdate()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        return buf.getvalue()
    finally:
        plt.close(fig)


def write_report_with_history(inputs: list[Path], out_dir: Path, where: str) -> tuple[Path, Path]:
    """The report of `inputs` (none: a history-only report) with the history section at its end."""
    from harness.report import build_document, collect, write_document

    url = database_url(where)
    engine = open_history(url)
    try:
        rows = list_runs(engine)
    finally:
        engine.dispose()
    section = history_section(rows, shown(url))
    if inputs:
        doc = build_document(collect(list(inputs)))
    else:
        doc = Document(title="Run history", inputs=[shown(url)])
    doc.alerts += section.alerts
    doc.sections.append(section)
    return write_document(doc, out_dir)


def _cell(value: Any) -> Any:
    return value.isoformat(timespec="seconds") if isinstance(value, dt.datetime) else value
