"""tools/sut_overhead.py: its smallest configuration on the Python SUT prints conditions, figures and LoadGen's
verdicts; the issue delay (sut_overhead_trace.py) pairs a LoadGen trace with the SUT's enqueue times; bad flags
exit 2."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from harness.sut.python_sut import SystemUnderTest
from tools import sut_overhead
from tools.sut_overhead_trace import ClockPair, issue_delay

SMALLEST = [
    "--parts", "offline,server,issue-delay", "--kinds", "python", "--latencies-ms", "0", "--gil-hold-ms", "0,2",
    "--offline-duration-ms", "200", "--offline-repeats", "1",
    "--server-duration-ms", "200", "--server-min-queries", "50", "--server-steps", "1",
    "--issue-duration-ms", "300", "--issue-repeats", "1", "--issue-qps", "100",
]  # fmt: skip


def test_the_smallest_configuration_prints_conditions_figures_and_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    assert sut_overhead.main(SMALLEST) == 0
    out = capsys.readouterr().out
    conditions, table, targets = out.split("\n\n")
    for needed in ("machine:", "cores usable", "GPU:", "LoadGen: ", "SUT kinds: python (measured)", "load average"):
        assert needed in conditions, needed
    assert "Offline >= 200 ms x 1 runs per SUT" in conditions
    cells = [re.split(r"\s{2,}", r.strip()) for r in table.splitlines()[1:]]
    raw, rows = [c for c in cells if c[2] == "raw loop"], [c for c in cells if c[2] != "raw loop"]
    assert len(raw) == 1 and raw[0][0] == "Offline samples/s" and raw[0][-1] == "-"  # no LoadGen: no verdict
    parts = [c[0] for c in rows]
    assert parts.count("Offline samples/s") == 1 and parts.count("Server max VALID QPS") == 1
    for part in ("issue delay", "LoadGen's part", "SUT's part", "in IssueQuery"):
        assert parts.count(part) == 2, part  # one per GIL hold
    for row in rows:  # every figure has LoadGen's verdict on the run behind it
        assert row[2] == "python" and re.fullmatch(r"VALID|INVALID.*", row[-1]), row
    offline = next(r for r in rows if r[0] == "Offline samples/s")
    assert re.fullmatch(
        r"[\d,]+ \(median of 1 VALID: .*\); [-+][\d.]+ us/sample over the backend's own loop", offline[3]
    ) or (offline[3] == "no VALID run"), offline
    # the native SUT was not asked for here: the targets that need it say so rather than pass
    assert "native Offline ceiling >= 5x Python's (fake 0 ms, VALID runs): not measured" in targets
    assert "python SUT within 1% of the raw loop: not measured" in targets


def _trace(path: Path, origin_us: str, samples: list[tuple[int, int, float, int]]) -> Path:
    """A trace as LoadGen writes it: one event per line, LogDetail args with doubled quotes, otherData.ts."""
    lines = ['{"traceEvents":[', '{"name":"LogDetail","ph":"X","args":{"key":""loadgen_version""}},']
    for seq, idx, ts_us, issue_ns in samples:
        lines.append(
            f'{{"name":"Sample","cat":"default","ph":"b","pid":1,"id":{seq},"ts":{ts_us:.3f},"args":{{"sample_seq":'
            f'{seq},"query_seq":{seq},"sample_idx":{idx},"issue_start_ns":{issue_ns},"complete_ns":5}}}},'
        )
        lines.append(f'{{"name":"IssueQuery","ph":"X","pid":1,"tid":2,"ts":{ts_us:.3f},"dur":2.500,"args":{{}}}},')
    lines += ['{"name":"LastTrace"}', "],", '"displayTimeUnit":"ns",', '"otherData":{', f'"ts":{origin_us},', "}", "}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_issue_delay_aligns_the_clocks_and_pairs_queries_in_order(tmp_path: Path) -> None:
    # the wall clock is 1e18 ns ahead of the monotonic one; the trace origin is at wall 1e18 + 1e9 ns
    clocks = (ClockPair(10**18, 100, 0), ClockPair(10**18, 100, 10**10))
    trace = _trace(tmp_path / "t.json", "1000000001000000.000", [(1, 7, 2000.0, 3000), (0, 5, 1000.0, 1000)])
    # query 0 scheduled at origin + 1 ms, enqueued 0.25 ms later; query 1 at origin + 2 ms, enqueued 4 ms later
    enqueues = [(7, 10**9 + 2_000_000 + 4_000_000), (5, 10**9 + 1_000_000 + 250_000)]
    d = issue_delay(trace, enqueues, clocks)
    assert d.total_ms == pytest.approx((0.25, 4.0))
    assert d.loadgen_ms == pytest.approx((0.001, 0.003))
    assert d.sut_ms == pytest.approx((0.249, 3.997))
    assert d.in_issue_query_ms == pytest.approx((0.0025, 0.0025))
    assert d.alignment_us == pytest.approx(0.05)

    swapped = [(5, enqueues[0][1]), (7, enqueues[1][1])]
    with pytest.raises(ValueError, match="do not pair by sample index"):
        issue_delay(trace, swapped, clocks)


@pytest.mark.parametrize(
    "argv",
    [
        ["--latencies-ms", "-1"],
        ["--parts", "offline,nope"],
        ["--kinds", "rust"],
        ["--batch-size", "0"],
        ["--max-wait-ms", "nan"],
    ],
)
def test_bad_flags_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        code = sut_overhead.main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "error:" in err[-1]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's death is the point
def test_a_worker_thread_that_dies_ends_the_tool_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error in the SUT's own completion code (outside the backend call) kills its worker thread; the tool
    must end with that reason, not wait for LoadGen for ever."""
    original = SystemUnderTest._complete

    def complete_then_raise(self: SystemUnderTest, queries: Any, images: Any) -> None:
        original(self, queries, images)  # LoadGen has its answers: only the thread dies
        if images is not None:
            raise RuntimeError("injected: completion bookkeeping failed")

    monkeypatch.setattr(SystemUnderTest, "_complete", complete_then_raise)
    argv = ["--parts", "offline", "--kinds", "python", "--latencies-ms", "0", "--offline-duration-ms", "200"]
    start = time.perf_counter()
    assert sut_overhead.main([*argv, "--offline-repeats", "1"]) == 1
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert "error: the Offline run in " in err and "RuntimeError: injected: completion bookkeeping failed" in err
