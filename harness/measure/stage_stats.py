"""Where a run's time went: per-stage totals and percentiles, per-step latency, and the share of
wall time spent outside the backend (queueing, batching, LoadGen), from what the SUT collected."""

from __future__ import annotations

from typing import Any

import numpy as np


def _pct_ms(values_ns: list[int]) -> dict[str, float]:
    a = np.asarray(values_ns, dtype=np.float64) / 1e6
    return {
        "total_ms": round(float(a.sum()), 3),
        "mean_ms": round(float(a.mean()), 3),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
    }


def summarise_stages(
    batch_stages: list[dict[str, int]],
    steps_ns: list[int],
    batch_times_ns: list[int],
    handback_ns: list[int],
    run_wall_s: float,
    workers: int,
) -> dict[str, Any]:
    """`batch_stages`: one dict per batch (stage -> ns) as the backend reported it."""
    names: list[str] = []
    for stages in batch_stages:
        for name in stages:
            if name not in names:
                names.append(name)
    per_stage = {name: _pct_ms([s[name] for s in batch_stages if name in s]) for name in names}
    if handback_ns:
        per_stage["handback"] = _pct_ms(handback_ns)  # QuerySamplesComplete, measured by the SUT
    busy_s = sum(batch_times_ns) / 1e9
    capacity_s = run_wall_s * max(workers, 1)
    return {
        "stages": per_stage,
        "steps": {"count": len(steps_ns), **_pct_ms(steps_ns)} if steps_ns else {"count": 0},
        "backend_busy_s": round(busy_s, 3),
        "outside_backend_share": round(max(0.0, 1 - busy_s / capacity_s), 4) if capacity_s > 0 else None,
    }
