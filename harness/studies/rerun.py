"""What a study (sweep, scale) changes to run an INVALID point again so that LoadGen can call it VALID.

LoadGen says why a result is INVALID: too short (it pre-generated too few queries for the measured
speed), or too few queries for early stopping. Both are fixed by the figures the INVALID run measured:
a higher expected rate, a lower expected latency, or more queries. One more run, never a loop.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from harness.run.summary import RunSummary, as_summary

# LoadGen's early-stopping texts (loadgen/results.cc, PerformanceSummary::EarlyStopping).
_NEED_TOTAL = re.compile(r"Need to process at least (\d+) queries")
_NEED_MORE = re.compile(r"Would need to run at least (\d+) more queries")
HEADROOM = 1.3  # LoadGen adds 10% slack itself; a little more so that the second run is surely long enough


def rerun_sets(scenario: str, summary: RunSummary | Mapping[str, Any] | None) -> list[str]:
    """`--set` items that give an INVALID performance run what it lacked; [] when it is VALID, did not
    finish, or LoadGen's reason is not one more samples or a longer run can cure."""
    s = as_summary(summary)
    if s is None:
        return []
    verdict = s.verdict()
    if s.status != "ok" or s.mode != "performance" or verdict.validity != "INVALID":
        return []
    reason = verdict.reason
    out: list[str] = []
    short = s.loadgen.min_duration_met is False or "pre-generates" in reason
    sps = s.samples_per_second
    if short and scenario == "Offline" and sps:
        out.append(f"loadgen.offline_expected_qps={sps * HEADROOM:.4f}")
    mean_ms = s.latency_ms.get("mean")
    if short and scenario == "SingleStream" and mean_ms:
        out.append(f"loadgen.single_stream_expected_latency_ns={int(mean_ms * 1e6 / HEADROOM)}")
    issued = int(s.query_count or 0)
    if m := _NEED_TOTAL.search(reason):
        out.append(f"loadgen.min_query_count={math.ceil(int(m.group(1)) * 1.1)}")
    elif m := _NEED_MORE.search(reason):
        out.append(f"loadgen.min_query_count={math.ceil((issued + int(m.group(1))) * 1.1)}")
    return out
