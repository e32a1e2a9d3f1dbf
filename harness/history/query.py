"""Reading the history: runs by filter, a run by reference (run id, run folder, last:N), its latencies.

rows = list_runs(engine, RunFilter(model="tiny", since=...))
ref = resolve(engine, "runs/20261207-...")       # a folder is recorded first if it was not
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from harness.history.db import HistoryError
from harness.history.record import record_run_dir, run_id_of
from harness.history.schema import CONDITIONS, quality_by_category, runs, sample_latencies


@dataclass(frozen=True)
class RunFilter:
    model: str | None = None
    backend: str | None = None
    scenario: str | None = None
    hardware: str | None = None  # substring of the hardware label
    since: dt.datetime | None = None  # UTC
    git_commit: str | None = None  # prefix
    limit: int | None = None


@dataclass(frozen=True)
class RunSet:
    """One run, or the last N runs pooled as one baseline (their samples together)."""

    label: str
    rows: tuple[Mapping[str, Any], ...]
    latencies_ms: np.ndarray = field(repr=False)  # pooled per-sample latencies, run after run
    completion_gaps_ms: np.ndarray = field(repr=False)  # Offline: time between completions, pooled
    quality: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (metric, category) -> mean
    per_run_latencies_ms: tuple[np.ndarray, ...] = field(default=(), repr=False)  # one array per row

    @property
    def first(self) -> Mapping[str, Any]:
        return self.rows[0]

    def mean(self, column: str) -> float | None:
        values = [r[column] for r in self.rows if r[column] is not None]
        return float(np.mean(values)) if values else None

    def invalid(self) -> list[str]:
        """'<run id>: INVALID (reason)' for each run LoadGen did not call VALID."""
        out = []
        for r in self.rows:
            if r["result_validity"] != "VALID":
                reason = f" ({r['invalid_reason']})" if r["invalid_reason"] else ""
                out.append(f"{r['run_id']}: {r['result_validity'] or 'no LoadGen result'}{reason}")
        return out


def list_runs(engine: Engine, flt: RunFilter = RunFilter()) -> list[dict[str, Any]]:
    q = select(runs).order_by(runs.c.started_at, runs.c.recorded_at, runs.c.run_id)
    for column in ("model", "backend", "scenario"):
        value = getattr(flt, column)
        if value:
            q = q.where(runs.c[column] == value)
    if flt.hardware:
        q = q.where(runs.c.hardware.contains(flt.hardware, autoescape=True))
    if flt.since:
        q = q.where(runs.c.started_at >= flt.since)
    if flt.git_commit:
        q = q.where(runs.c.git_commit.startswith(flt.git_commit, autoescape=True))
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    return rows[-flt.limit :] if flt.limit else rows


def resolve(
    engine: Engine,
    ref: str,
    like: Mapping[str, Any] | None = None,
    exclude: str | None = None,
    match: Sequence[str] = CONDITIONS,
    before: dt.datetime | None = None,
) -> RunSet:
    """A run id, a run folder (recorded now if it was not), or last:N (the N newest runs whose conditions
    in `match` equal those of `like`, other than `exclude`); `last` alone is last:1."""
    if ref == "last" or ref.startswith("last:"):
        n = _last_count(ref)
        q = select(runs).order_by(runs.c.started_at.desc(), runs.c.recorded_at.desc(), runs.c.run_id.desc())
        if like is not None:
            for column in match:
                q = q.where(runs.c[column].is_(None) if like[column] is None else runs.c[column] == like[column])
        if exclude is not None:
            q = q.where(runs.c.run_id != exclude)
        if before is not None:
            q = q.where(runs.c.started_at <= before)
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q.limit(n))]
        if not rows:
            what = " with the same conditions" if like is not None else ""
            raise HistoryError(f"{ref}: no run in the history{what}")
        return _load(engine, ref, rows[::-1])
    path = Path(ref)
    if path.is_dir():
        run_id = record_run_dir(engine, path).run_id
    else:
        run_id = ref
    with engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
        if row is None:
            matches = conn.execute(select(runs).where(runs.c.run_id.startswith(run_id, autoescape=True))).all()
            if len(matches) != 1:
                found = "no run" if not matches else f"{len(matches)} runs"
                raise HistoryError(f"{ref!r}: {found} with that id or id prefix in the history, and no such folder")
            row = matches[0]
    return _load(engine, dict(row._mapping)["run_id"], [dict(row._mapping)])


def latest(engine: Engine) -> str:
    with engine.connect() as conn:
        run_id = conn.execute(
            select(runs.c.run_id).order_by(runs.c.started_at.desc(), runs.c.recorded_at.desc(), runs.c.run_id.desc())
        ).scalar()
    if run_id is None:
        raise HistoryError("the history has no runs")
    return str(run_id)


def folder_run_id(path: Path) -> str:
    return run_id_of(path)


def _last_count(ref: str) -> int:
    tail = ref.partition(":")[2] or "1"
    if not tail.isdigit() or int(tail) < 1:
        raise HistoryError(f"{ref!r}: expected last:N with N >= 1")
    return int(tail)


def _load(engine: Engine, label: str, rows: Sequence[dict[str, Any]]) -> RunSet:
    ids = [r["run_id"] for r in rows]
    lat: list[np.ndarray] = []
    gaps: list[np.ndarray] = []
    quality: dict[tuple[str, str], list[float]] = {}
    with engine.connect() as conn:
        for run_id in ids:
            values = conn.execute(
                select(sample_latencies.c.latency_ms)
                .where(sample_latencies.c.run_id == run_id)
                .order_by(sample_latencies.c.seq)
            ).scalars()
            arr = np.asarray(list(values), dtype=float)
            lat.append(arr)
            gaps.append(completion_gaps(arr))
        for q in conn.execute(select(quality_by_category).where(quality_by_category.c.run_id.in_(ids))):
            if q.value is not None:
                quality.setdefault((q.metric, q.category), []).append(q.value)
    return RunSet(
        label=label,
        rows=tuple(rows),
        latencies_ms=np.concatenate(lat) if lat else np.zeros(0),
        completion_gaps_ms=np.concatenate(gaps) if gaps else np.zeros(0),
        quality={k: float(np.mean(v)) for k, v in quality.items()},
        per_run_latencies_ms=tuple(lat),
    )


def completion_gaps(latencies_ms: np.ndarray) -> np.ndarray:
    """Offline: LoadGen issues every sample at once, so a sample's latency is when it completed; the gaps
    between successive completions (a batch's samples complete together) are the time each batch took to
    come back, the per-batch evidence behind the run's throughput. The first gap (batch forming, first
    batch) is left out."""
    times = np.unique(np.round(latencies_ms, 3))
    return np.diff(times)
