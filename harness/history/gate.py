"""The regression gate: compare a candidate run with a baseline (a run, or the last N runs pooled) whose
conditions match, and list the metrics that got worse beyond their thresholds.

A throughput or latency regression counts only when it is significant (stats.py) AND beyond its
threshold (the slowdown: of the typical throughput, from the median time between completions): noise
is never called a regression, and a significant 1% is not one under a 5% limit. Against a baseline of
several runs (last:N), a slowdown must also take the candidate below the slowest baseline run: the
per-sample CI sees the noise within one run, the baseline runs show how much runs differ on the machine.
CLIP and FID are one number per run: their threshold alone decides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.history.query import RunSet
from harness.history.schema import CONDITIONS
from harness.history.stats import TYPICAL, MetricDelta, compare, typical_rates

SCORES = ("clip_score", "fid_score")


@dataclass(frozen=True)
class Thresholds:
    max_slowdown: float | None = 0.05  # fraction of samples/s lost
    max_p99_increase: float | None = None  # fraction
    max_clip_drop: float | None = None  # CLIP score points
    max_fid_increase: float | None = None  # FID points


@dataclass(frozen=True)
class GateResult:
    deltas: tuple[MetricDelta, ...]
    failures: tuple[str, ...]  # one line per failing metric
    checked: tuple[str, ...]  # one line per check made (pass or fail)
    failed_metrics: tuple[str, ...] = ()  # the metrics behind `failures`, in the same order

    @property
    def timing_only(self) -> bool:
        """Every failure is a timing one (throughput, p99), which a second run of the candidate can test;
        CLIP and FID come from fixed seeds and would only repeat."""
        return bool(self.failed_metrics) and all(m not in SCORES for m in self.failed_metrics)


def condition_differences(
    baseline: Mapping[str, Any], candidate: Mapping[str, Any], allowed: Sequence[str] = ()
) -> list[str]:
    """'<condition>: <baseline> vs <candidate>' for each condition that differs; backend options are
    compared key by key (backend.<option>), so that one can be allowed with `allowed`."""
    out = []
    for column in CONDITIONS:
        if column == "backend_options":
            a = json.loads(baseline[column] or "{}")
            b = json.loads(candidate[column] or "{}")
            for key in sorted(set(a) | set(b)):
                name = f"backend.{key}"
                if a.get(key) != b.get(key) and name not in allowed:
                    out.append(f"{name}: {a.get(key)!r} vs {b.get(key)!r}")
        elif column == "loadgen_settings_hash" and baseline[column] != candidate[column] and column not in allowed:
            out.append(f"LoadGen settings (hash {baseline[column][:12]} vs {candidate[column][:12]})")
        elif baseline[column] != candidate[column] and column not in allowed:
            out.append(f"{column}: {baseline[column]!r} vs {candidate[column]!r}")
    return out


def allowed_names() -> list[str]:
    return [*CONDITIONS, "backend.<option>"]


def judge(baseline: RunSet, candidate: RunSet, t: Thresholds) -> GateResult:
    deltas = compare(baseline, candidate)
    by_name = {d.metric: d for d in deltas}
    failures: list[str] = []
    failed_metrics: list[str] = []
    checked: list[str] = []

    def timed(metric: str, limit: float | None, what: str) -> None:
        d = by_name.get(metric)
        if limit is None or d is None:
            return
        if d.change is None:
            checked.append(f"{what}: no figure in one of the runs; not checked")
            return
        amount = -d.change if d.higher_is_better else d.change  # > 0: worse
        ci = f", 95% CI {_pct(d.ci[0])}..{_pct(d.ci[1])}" if d.ci else ""
        line = f"{what} {_pct(amount)} (limit {_pct(limit)}; {d.label} {_num(d.a)} -> {_num(d.b)}{ci}; {d.verdict()})"
        spread = _within_baseline_spread(d, metric)
        if amount > limit and d.significant and spread:
            checked.append(f"{line}: within the spread of the {len(baseline.rows)} baseline runs ({spread})")
        elif amount > limit and d.significant:
            failures.append(line)
            failed_metrics.append(metric)
        elif amount > limit and d.significant is None:
            checked.append(f"{line}: over the limit but not judged ({d.note})")
        else:
            checked.append(line)

    def _within_baseline_spread(d: MetricDelta, metric: str) -> str:
        """With a baseline of several runs, a slowdown must also fall below the slowest of them: the
        per-sample CI sees one run's noise, not how much runs differ from each other on this machine."""
        if metric != TYPICAL or len(baseline.rows) < 2 or d.b is None:
            return ""
        rates = typical_rates(baseline, str(baseline.first["scenario"]))
        if len(rates) >= 2 and d.b >= min(rates):
            return f"slowest {min(rates):.4g}, candidate {d.b:.4g}"
        return ""

    def points(metric: str, limit: float | None, what: str, drop: bool) -> None:
        d = by_name.get(metric)
        if limit is None:
            return
        if d is None or d.a is None or d.b is None:
            checked.append(f"{what}: no score in one of the runs (accuracy mode scores them); not checked")
            return
        amount = d.a - d.b if drop else d.b - d.a
        line = f"{what} {amount:+.4g} (limit {limit:g}; {d.label} {_num(d.a)} -> {_num(d.b)})"
        if amount > limit:
            failures.append(line)
            failed_metrics.append(metric)
        else:
            checked.append(line)

    judged = by_name.get(TYPICAL)
    timed(TYPICAL if judged is not None else "samples_per_second", t.max_slowdown, "slowdown")
    timed("latency_p99_ms", t.max_p99_increase, "p99 latency increase")
    points("clip_score", t.max_clip_drop, "CLIP score drop", drop=True)
    points("fid_score", t.max_fid_increase, "FID increase", drop=False)
    return GateResult(tuple(deltas), tuple(failures), tuple(checked), tuple(failed_metrics))


def parse_fraction(text: str) -> float:
    """'5%' -> 0.05, '0.05' -> 0.05."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError as exc:
        raise ValueError(f"expected a percentage like 5% or a fraction like 0.05, got {text!r}") from exc
    if value < 0:
        raise ValueError(f"must be >= 0, got {text!r}")
    return value


def _pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"
