"""The issue delay of a LoadGen Server run: from each query's scheduled time, read from LoadGen's trace
(mlperf_log_trace.json, profile.loadgen_trace), to the SUT's enqueue time of it (tools/sut_overhead.py).

LoadGen logs each completed sample as a "Sample" event whose ts is its query's scheduled time in microseconds
after the trace origin, with issue_start_ns (scheduled -> the issue thread about to call the SUT's
IssueQuery); "IssueQuery" events time the call itself. The origin is the footer's otherData.ts: PerfClock
(std::chrono::high_resolution_clock, the system clock in libstdc++) in microseconds since the epoch. Both SUTs
stamp the enqueue with CLOCK_MONOTONIC (perf_counter_ns, steady_clock), so the two clocks are read back to
back before and after the run and the offset is interpolated between them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClockPair:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC, read back to back; `bracket_ns` is the read's own width."""

    offset_ns: int
    bracket_ns: int
    mono_ns: int

    @classmethod
    def read(cls) -> ClockPair:
        best: tuple[int, int, int] | None = None
        for _ in range(20):
            a = time.perf_counter_ns()
            wall = time.time_ns()
            b = time.perf_counter_ns()
            if best is None or b - a < best[1]:
                best = (wall - (a + b) // 2, b - a, (a + b) // 2)
        assert best is not None
        return cls(*best)


@dataclass(frozen=True)
class IssueDelay:
    """Per query, in ms: the whole delay and its two parts, split at LoadGen's issued_start_time (taken just
    before it calls the SUT's IssueQuery; the Sample event's issue_start_ns); and LoadGen's "IssueQuery"
    trace events, the whole IssueQuery call."""

    total_ms: tuple[float, ...]  # scheduled -> SUT enqueue
    loadgen_ms: tuple[float, ...]  # scheduled -> LoadGen starts the issue (its own wake-up and bookkeeping)
    sut_ms: tuple[float, ...]  # issue start -> SUT enqueue (the Python SUT takes the GIL here)
    in_issue_query_ms: tuple[float, ...]
    alignment_us: float  # the clock reads' half bracket plus the offset's drift over the run


_SAMPLE = re.compile(
    r'"ts":([0-9.]+),"args":\{"sample_seq":\d+,"query_seq":(\d+),"sample_idx":(\d+),"issue_start_ns":(\d+)'
)


def issue_delay(trace: Path, enqueues: Sequence[tuple[int, int]], clocks: tuple[ClockPair, ClockPair]) -> IssueDelay:
    """`enqueues`: (sample index, CLOCK_MONOTONIC ns) per query as the SUT stamped it; `clocks`: read before and
    after the run. Pairs the k-th scheduled query (query_seq k) with the k-th enqueue (LoadGen issues from one
    thread, in query order); ValueError where they do not pair by sample index."""
    origin_ns: int | None = None
    scheduled: list[tuple[int, int, int, int]] = []  # (query_seq, sample_idx, scheduled ns after origin, issue ns)
    in_call: list[float] = []
    with trace.open(encoding="utf-8", errors="replace") as f:
        for line in f:  # line by line: LoadGen's trace is not valid JSON (its LogDetail args double their quotes)
            if line.startswith('{"name":"Sample"') and '"ph":"b"' in line:
                m = _SAMPLE.search(line)
                if m:
                    scheduled.append((int(m[2]), int(m[3]), _us_to_ns(m[1]), int(m[4])))
            elif line.startswith('{"name":"IssueQuery"'):
                dur = re.search(r'"dur":([0-9.]+)', line)
                if dur:
                    in_call.append(float(dur[1]) / 1e3)
            elif line.startswith('"ts":'):  # the footer's otherData.ts: the origin, us since the epoch
                origin_ns = _us_to_ns(line[5:].strip().rstrip(","))
    if origin_ns is None:
        raise ValueError(f"{trace} has no otherData.ts (the trace origin)")
    enqueues = sorted(enqueues, key=lambda e: e[1])  # one issue thread: enqueue order is issue order
    scheduled.sort()
    if len(scheduled) != len(enqueues) or any(s[1] != e[0] for s, e in zip(scheduled, enqueues, strict=False)):
        raise ValueError(f"{len(scheduled)} traced samples and {len(enqueues)} enqueues do not pair by sample index")
    before, after = clocks
    span = max(after.mono_ns - before.mono_ns, 1)

    def to_wall(mono_ns: int) -> int:  # the offset interpolated over the run; integers (1e18 ns is past float's ns)
        return mono_ns + before.offset_ns + (after.offset_ns - before.offset_ns) * (mono_ns - before.mono_ns) // span

    total = [(to_wall(e[1]) - origin_ns - s[2]) / 1e6 for s, e in zip(scheduled, enqueues, strict=True)]
    loadgen = [s[3] / 1e6 for s in scheduled]
    alignment_ns = max(before.bracket_ns, after.bracket_ns) / 2 + abs(after.offset_ns - before.offset_ns)
    return IssueDelay(
        tuple(total),
        tuple(loadgen),
        tuple(t - g for t, g in zip(total, loadgen, strict=True)),
        tuple(in_call),
        alignment_ns / 1e3,
    )


def _us_to_ns(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 1000 + int((frac + "000")[:3])
