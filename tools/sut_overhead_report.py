"""What tools/sut_overhead.py prints: the conditions of the measurement, the table of figures with LoadGen's
verdict beside each, and the issue's targets (met, NOT met, not measured, or not resolved)."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.loadgen.module import loadgen_build
from harness.sut.choice import native_core
from tools.sut_overhead_run import SutMaker

if TYPE_CHECKING:
    from tools.sut_overhead import Bench

# "Unchanged" for the native issue-delay target: the p99 at every GIL hold within this of the p99 at none.
# A GIL wait would add up to the interpreter's switch interval (5 ms); 0.1 ms is far below that.
UNCHANGED_MS = 0.1


@dataclass(frozen=True)
class Row:
    part: str
    condition: str
    sut: str
    figure: str
    verdict: str  # LoadGen's verdict on the run behind the figure; "-" where no LoadGen ran


def conditions(args: argparse.Namespace, makers: dict[str, SutMaker], missing: dict[str, str]) -> list[str]:
    cpu = "unknown CPU"
    try:
        cpu = next(
            ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln
        )
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = "nvidia-smi present" if shutil.which("nvidia-smi") else "none (no nvidia-smi)"
    lg = loadgen_build()
    built = ""
    if lg.origin == "source-build":
        what = f"sha256 {lg.sdist_sha256[:16]}..." if lg.sdist_sha256 else (lg.source_git or "")
        built = f", from {lg.source_kind} {what}, {lg.compiler}, {lg.build_type}"
    controls = ", with sleep controls" if args.sleep_control else ""
    core = native_core()[0] if "native" in makers else None
    measured = [f"{k} (measured{f', {core.__file__}' if k == 'native' and core else ''})" for k in makers]
    sut_kinds = ", ".join(measured + [f"{k} (NOT measured: {why})" for k, why in missing.items()])
    return [
        f"machine: {platform.node()}, {cpu}, {cores} cores usable, GPU: {gpu}, {platform.platform()}",
        f"python {platform.python_version()}, GIL switch interval {sys.getswitchinterval() * 1e3:g} ms",
        f"LoadGen: {lg.origin} {lg.version} @ {lg.git_revision}{built} ({lg.module_path})",
        f"SUT kinds: {sut_kinds}",
        f"parts: {', '.join(args.parts)}; fake backend {args.image_px}x{args.image_px} images, batch "
        f"{args.batch_size}, Server max wait {args.max_wait_ms:g} ms",
        f"durations: Offline >= {args.offline_duration_ms} ms x {args.offline_repeats} runs per SUT; Server search "
        f"{args.server_steps} runs of >= {args.server_duration_ms} ms and {args.server_min_queries} queries; issue "
        f"delay {args.issue_repeats} runs of >= {args.issue_duration_ms} ms per condition{controls} (p99 target "
        f"{args.issue_target_latency_ms:g} ms); raw loop: {args.raw_model}, {args.raw_samples} samples x "
        f"{args.raw_rounds} rounds",
    ]


def table(rows: Sequence[Row]) -> list[str]:
    header = Row("part", "condition", "SUT", "figure", "LoadGen verdict")
    cells = [(r.part, r.condition, r.sut, r.figure, _clip(r.verdict, 100)) for r in [header, *rows]]
    cols = list(zip(*cells, strict=True))
    widths = [max(len(c) for c in col) for col in cols[:-1]]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) + "  " + line[-1]
        for line in zip(*cols, strict=True)
    ]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def targets(bench: Bench) -> list[str]:
    out = []
    lat0 = min(bench.args.latencies_ms, default=0.0)
    py, na = bench.offline_sps.get((lat0, "python")), bench.offline_sps.get((lat0, "native"))
    ceiling = "not measured" if py is None or na is None else f"{na / py:.2f}x: {'met' if na >= 5 * py else 'NOT met'}"
    if py is not None and lat0 in bench.offline_raw:  # what the backend alone allows, whatever the SUT
        own = bench.offline_raw[lat0]
        ceiling += f"; the backend's own loop: {own:,.0f}/s = {own / py:.2f}x Python's, the most any SUT could reach"
        if na is not None:
            cost_py, cost_na = 1e6 / py - 1e6 / own, 1e6 / na - 1e6 / own
            ceiling += f"; us/sample beyond the backend: Python {cost_py:.1f}, native {cost_na:.1f}"
    out.append(f"native Offline ceiling >= 5x Python's (fake {lat0:g} ms, VALID runs): {ceiling}")
    holds = sorted(h for h, k in bench.issue_p99 if k == "native")
    for i, what in enumerate(("issue-delay p99", "issue-delay p99, SUT's part")):
        if not holds or holds[0] != 0 or len(holds) < 2:
            out.append(f"native {what} unchanged by gil_hold_ms: not measured")
            continue
        base = bench.issue_p99[(0, "native")][i]
        held = ", ".join(f"{bench.issue_p99[(h, 'native')][i]:.3f} at {h:g} ms" for h in holds[1:])
        worst = max(abs(bench.issue_p99[(h, "native")][i] - base) for h in holds[1:])
        met = "met" if worst <= UNCHANGED_MS else "NOT met"
        out.append(f"native {what} unchanged (within +-{UNCHANGED_MS} ms of {base:.3f} ms at 0 ms): {held}: {met}")
    for kind in bench.args.kinds:
        if kind not in bench.raw_ratio:
            out.append(f"{kind} SUT within 1% of the raw loop: not measured")
            continue
        median, low, high = bench.raw_ratio[kind]
        if high - low > 0.02:  # the rounds disagree by more than the target's width
            verdict = f"not resolved here (median {median:.4f}, rounds {low:.4f}..{high:.4f})"
        else:
            verdict = f"median {median:.4f} ({low:.4f}..{high:.4f}): {'met' if median >= 0.99 else 'NOT met'}"
        out.append(f"{kind} SUT within 1% of the raw loop (per-round ratios): {verdict}")
    return out
