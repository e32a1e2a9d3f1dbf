"""What the system under test costs: the Python SUT against the native (C++) one, with the fake backend, and both
against the raw backend loop on the tiny model (issue 18, part 5).

    python -m tools.sut_overhead [--parts offline,server,issue-delay,raw] [--kinds python,native]
                                 [--latencies-ms 0,1] [--gil-hold-ms 0,2,10] [durations, see --help]

Parts:
- offline: LoadGen Offline samples/s, fake backend at each --latencies-ms per batch (0 = the null-backend
  ceiling). LoadGen issues 1.1 x offline_expected_qps x min duration samples and calls a run that ends
  sooner INVALID, so a run that was too fast is repeated with the expected QPS raised to 1.5x what it did.
- server: the highest Server target QPS LoadGen calls VALID (its own verdict, from mlperf_log_detail.txt),
  a doubling-then-bisecting search of --server-steps runs.
- issue-delay: Server at --issue-qps while the worker holds the GIL for each --gil-hold-ms per batch
  (backend.gil_hold_ms): from LoadGen's scheduled time of each query to the SUT's enqueue time of it, split
  at the moment LoadGen calls the SUT's IssueQuery, and the time inside that call (LoadGen's trace against
  the SUT's CLOCK_MONOTONIC stamps: tools/sut_overhead_trace.py says how the clocks are aligned).
- raw: the tiny model (its own backend) at one batch size: the raw generate loop, then LoadGen Offline
  through each SUT, alternating, in one process with one loaded backend (tools/overhead.py's method).

The native SUT runs where harness/sut/choice.py's native_core() allows it in this process (harness_native built,
and the source-built LoadGen in use, which then runs the Python SUT's runs too); elsewhere it is reported as not
measured, with that reason, and nothing is estimated in its place.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.config import RunConfig, resolve_config
from harness.errors import HarnessError
from harness.loadgen.logs import Verdict
from harness.run.model import RunInputs, direct_batch, latent_shape, make_backend, prepare_inputs
from tools.sut_overhead_report import Row, conditions, table, targets
from tools.sut_overhead_run import LoadGenRun, RunFailed, SutMaker, run_loadgen, sut_makers
from tools.sut_overhead_trace import IssueDelay, issue_delay

PARTS = ("offline", "server", "issue-delay", "raw")
KINDS = ("python", "native")


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# 1. The parts ------------------------------------------------------------------------------------------------
@dataclass
class Bench:
    args: argparse.Namespace
    makers: dict[str, SutMaker]
    missing: dict[str, str]
    work: Path
    rows: list[Row] = field(default_factory=list)
    offline_sps: dict[tuple[float, str], float] = field(default_factory=dict)  # (latency, kind) -> VALID figure
    offline_raw: dict[float, float] = field(default_factory=dict)  # latency -> the fake backend's own loop
    # (gil hold, kind) -> p99 ms of the whole issue delay and of the SUT's part of it
    issue_p99: dict[tuple[float, str], tuple[float, float]] = field(default_factory=dict)
    raw_ratio: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # median, min, max
    _inputs: RunInputs | None = None
    _runs: int = 0

    def fake_config(self, scenario: str, sets: Sequence[str]) -> RunConfig:
        a = self.args
        base = [
            f"model.height={a.image_px}",
            f"model.width={a.image_px}",
            f"sut.batch_size={a.batch_size}",
            f"sut.max_batch_size={a.batch_size}",
            f"sut.max_wait_ms={a.max_wait_ms}",
            f"backend.reuse_images={'true' if a.reuse_images else 'false'}",
        ]
        cli = {"run.backend": "fake", "run.scenario": scenario, "run.mode": "performance"}
        cfg = resolve_config("tiny", None, cli, base)
        latent = self.work / "latent.npy"  # the fake backend ignores latents: a zero one spares importing torch
        if not latent.is_file():
            np.save(latent, np.zeros((1, *latent_shape(cfg)), np.float32))
        return resolve_config("tiny", None, cli, [*base, f"latents.file={latent}", *sets])

    def inputs(self, cfg: RunConfig) -> RunInputs:
        if self._inputs is None:
            self._inputs = prepare_inputs(cfg)
        return self._inputs

    def run(self, cfg: RunConfig, kind: str) -> LoadGenRun:
        self._runs += 1
        backend = make_backend(cfg, self.inputs(cfg).spec)
        backend.load()
        try:
            return run_loadgen(cfg, self.inputs(cfg), backend, self.makers[kind], self.work / f"run-{self._runs}")
        finally:
            backend.close()

    def not_measured(self, part: str, condition: str, kind: str) -> None:
        self.rows.append(Row(part, condition, kind, "not measured", self.missing[kind]))

    # offline ---------------------------------------------------------------------------------------------
    def offline(self) -> None:
        """--offline-repeats rounds of the fake backend's own loop and a run per SUT, interleaved; each figure is
        the median of its rounds (of the VALID runs for a SUT)."""
        a = self.args
        for latency in a.latencies_ms:
            reused = ", one image batch reused (null backend)" if a.reuse_images else ""
            cond = f"fake {latency:g} ms/batch{reused}, batch {a.batch_size}"
            own: list[float] = []
            expected = {kind: a.offline_start_qps for kind in self.makers}
            valid: dict[str, list[float]] = {kind: [] for kind in self.makers}
            verdicts: dict[str, set[str]] = {kind: set() for kind in self.makers}
            for _repeat in range(a.offline_repeats):
                own.append(self.fake_raw_loop(latency))
                for kind in self.makers:
                    for _attempt in range(4):
                        sets = [
                            f"backend.latency_ms={latency}",
                            f"loadgen.min_duration_ms={a.offline_duration_ms}",
                            f"loadgen.offline_expected_qps={expected[kind]}",
                            "loadgen.min_query_count=64",
                        ]
                        r = self.run(self.fake_config("Offline", sets), kind)
                        if (
                            r.verdict.valid
                            or r.samples_per_s is None
                            or r.detail.get("result_min_duration_met") is not False
                        ):
                            break
                        expected[kind] = round(1.5 * r.samples_per_s)  # ended before the minimum duration: issue more
                    verdicts[kind].add(r.verdict.label())
                    if r.verdict.valid and r.samples_per_s:
                        valid[kind].append(r.samples_per_s)
            self.offline_raw[latency] = statistics.median(own)
            figure = f"{self.offline_raw[latency]:,.0f} (median of {len(own)}: {_spread(own, 0)}; generate alone)"
            self.rows.append(Row("Offline samples/s", cond, "raw loop", figure, "-"))
            for kind in a.kinds:
                if kind not in self.makers:
                    self.not_measured("Offline samples/s", cond, kind)
                    continue
                figure = "no VALID run"
                if valid[kind]:
                    median, runs = statistics.median(valid[kind]), len(valid[kind])
                    extra_us = 1e6 / median - 1e6 / self.offline_raw[latency]  # the backend's own time taken off
                    figure = (
                        f"{median:,.0f} (median of {runs} VALID: {_spread(valid[kind], 0)}); "
                        f"{extra_us:+.1f} us/sample over the backend's own loop"
                    )
                    self.offline_sps[(latency, kind)] = median
                self.rows.append(Row("Offline samples/s", cond, kind, figure, ", ".join(sorted(verdicts[kind]))))

    def fake_raw_loop(self, latency: float) -> float:
        """The fake backend's own generate loop, no LoadGen and no SUT: the ceiling of any SUT's figure."""
        cfg = self.fake_config("Offline", [f"backend.latency_ms={latency}"])
        inputs, b = self.inputs(cfg), self.args.batch_size
        batches = [direct_batch(inputs.prompts, inputs.latents, [(i + j) % inputs.qsl.total_count for j in range(b)])
                   for i in range(0, inputs.qsl.total_count, b)]  # fmt: skip
        backend = make_backend(cfg, inputs.spec)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < self.args.offline_duration_ms / 1e3:
            backend.generate(batches[done // b % len(batches)])
            done += b
        return done / (time.perf_counter() - start)

    # server ----------------------------------------------------------------------------------------------
    def server(self) -> None:
        a = self.args
        for latency in a.latencies_ms:
            cond = f"fake {latency:g} ms/batch, p99 <= {a.server_latency_ms:g} ms, max wait {a.max_wait_ms:g} ms"
            for kind in a.kinds:
                if kind not in self.makers:
                    self.not_measured("Server max VALID QPS", cond, kind)
                    continue
                q = a.server_start_qps or 0.5 * self.offline_sps.get((latency, kind), 1000.0)
                valid: tuple[float, Verdict] | None = None
                invalid: tuple[float, Verdict] | None = None
                for _step in range(a.server_steps):
                    q = float(f"{q:.3g}")
                    sets = [
                        f"backend.latency_ms={latency}",
                        f"loadgen.server_target_qps={q}",
                        f"loadgen.server_target_latency_ns={int(a.server_latency_ms * 1e6)}",
                        "loadgen.server_target_latency_percentile=0.99",
                        f"loadgen.min_duration_ms={a.server_duration_ms}",
                        f"loadgen.min_query_count={a.server_min_queries}",
                    ]
                    verdict = self.run(self.fake_config("Server", sets), kind).verdict
                    if verdict.valid:
                        valid = (q, verdict) if valid is None or q > valid[0] else valid
                        q = 2 * q if invalid is None else (q + invalid[0]) / 2
                    else:
                        invalid = (q, verdict) if invalid is None or q < invalid[0] else invalid
                        q = q / 2 if valid is None else (q + valid[0]) / 2
                bracket = f" (INVALID at {invalid[0]:,.0f})" if invalid else " (none INVALID up to it)"
                if valid is not None:
                    self.rows.append(Row("Server max VALID QPS", cond, kind, f"{valid[0]:,.0f}{bracket}", "VALID"))
                else:
                    assert invalid is not None
                    lowest = f"none VALID; lowest tried {invalid[0]:,.0f}"
                    self.rows.append(Row("Server max VALID QPS", cond, kind, lowest, invalid[1].label()))

    # issue delay -----------------------------------------------------------------------------------------
    def issue_delay(self) -> None:
        """--issue-repeats runs per condition, interleaved (repeat, condition, kind), their queries pooled: one
        stall of a loaded machine then weighs less in a p99. With --sleep-control, each GIL hold also runs as a
        sleep of the same length (the same time per batch, no Python running): what the hold's CPU use alone
        does to LoadGen's issue thread on this machine, as against the GIL."""
        a = self.args
        conditions = [(a.issue_latency_ms, hold) for hold in a.gil_hold_ms]  # (sleep ms, GIL hold ms) per batch
        if a.sleep_control:
            conditions += [(a.issue_latency_ms + hold, 0.0) for hold in a.gil_hold_ms if hold > 0]
        pooled: dict[tuple[float, float, str], list[IssueDelay]] = {}
        verdicts: dict[tuple[float, float, str], list[str]] = {}
        for _repeat in range(a.issue_repeats):
            for sleep, hold in conditions:
                for kind in (k for k in a.kinds if k in self.makers):
                    sets = [
                        f"backend.latency_ms={sleep}",
                        f"backend.gil_hold_ms={hold}",
                        f"loadgen.server_target_qps={a.issue_qps}",
                        f"loadgen.server_target_latency_ns={int(a.issue_target_latency_ms * 1e6)}",
                        "loadgen.server_target_latency_percentile=0.99",
                        f"loadgen.min_duration_ms={a.issue_duration_ms}",
                        "loadgen.min_query_count=1",
                        "profile.loadgen_trace=true",
                    ]
                    r = self.run(self.fake_config("Server", sets), kind)
                    verdicts.setdefault((sleep, hold, kind), []).append(r.verdict.label())
                    if r.trace is None or r.clocks is None:
                        raise RunFailed(f"LoadGen wrote no trace for the issue-delay run ({sets}, {kind})", False)
                    pooled.setdefault((sleep, hold, kind), []).append(issue_delay(r.trace, r.enqueues, r.clocks))
        for sleep, hold in conditions:
            cond = f"Server {a.issue_qps:g} QPS, fake {sleep:g} ms sleep + GIL held {hold:g} ms/batch"
            for kind in a.kinds:
                if kind not in self.makers:
                    self.not_measured("issue delay", cond, kind)
                    continue
                runs, verdict = pooled[(sleep, hold, kind)], ", ".join(sorted(set(verdicts[(sleep, hold, kind)])))
                total, sut = _pool(runs, "total_ms"), _pool(runs, "sut_ms")
                if sleep == a.issue_latency_ms:
                    self.issue_p99[(hold, kind)] = (pct(total, 99), pct(sut, 99))
                clocks = max(d.alignment_us for d in runs)
                parts = [
                    ("issue delay", total, f" over {len(total)} in {len(runs)} runs (clocks +-{clocks:.1f} us)"),
                    ("  LoadGen's part", _pool(runs, "loadgen_ms"), " (scheduled -> IssueQuery called)"),
                    ("  SUT's part", sut, " (IssueQuery called -> enqueue time)"),
                    ("  in IssueQuery", _pool(runs, "in_issue_query_ms"), " (the whole call)"),
                ]
                for name, values, note in parts:
                    figure = f"p50 {pct(values, 50):.3f} / p99 {pct(values, 99):.3f} ms{note}"
                    self.rows.append(Row(name, cond, kind, figure, verdict))

    # raw loop --------------------------------------------------------------------------------------------
    def raw(self) -> None:
        """Rounds of the raw loop and each SUT, in an order that rotates each round; each SUT's figure is the
        median of its per-round ratios to that round's raw loop (pairs in time, on a machine whose load moves)."""
        a = self.args
        n, b = a.raw_samples, a.batch_size
        cfg = resolve_config(
            a.raw_model,
            None,
            {"run.scenario": "Offline", "run.mode": "performance"},
            [
                f"sut.batch_size={b}",
                f"loadgen.min_query_count={n}",
                "loadgen.min_duration_ms=1",
                "loadgen.offline_expected_qps=1",
                "loadgen.max_query_count=0",
            ],
        )
        inputs = prepare_inputs(cfg)
        backend = make_backend(cfg, inputs.spec)
        backend.load()
        qsl = inputs.qsl
        indices = [i % qsl.total_count for i in range(n)]
        batches = [direct_batch(inputs.prompts, inputs.latents, indices[i : i + b]) for i in range(0, n, b)]
        backend.warmup(batches[0])
        for batch in batches:  # one untimed pass: every batch's first call is off the clock, for all who follow
            backend.generate(batch)
        cond = f"{a.raw_model} ({cfg.run.backend}), batch {b}, {n} samples, {a.raw_rounds} rounds"
        order = ["raw loop", *self.makers]
        sps: dict[str, list[float]] = {k: [] for k in order}
        verdicts: dict[str, set[str]] = {k: set() for k in self.makers}
        for r in range(a.raw_rounds):
            for who in order[r % len(order) :] + order[: r % len(order)]:
                if who == "raw loop":
                    start = time.perf_counter()
                    for batch in batches:
                        backend.generate(batch)
                    sps[who].append(n / (time.perf_counter() - start))
                    continue
                run = run_loadgen(cfg, inputs, backend, self.makers[who], self.work / f"raw-{who}-{r}")
                if run.samples_per_s is None:
                    raise RunFailed(f"the {who} SUT's Offline run gave no samples/s", False)
                sps[who].append(run.samples_per_s)
                verdicts[who].add(run.verdict.label())
        backend.close()
        raw = sps["raw loop"]
        self.rows.append(
            Row("vs raw loop", cond, "raw loop", f"{statistics.median(raw):.3f} samples/s ({_spread(raw)})", "-")
        )
        for kind in a.kinds:
            if kind not in self.makers:
                self.not_measured("vs raw loop", cond, kind)
                continue
            ratios = [v / w for v, w in zip(sps[kind], raw, strict=True)]
            self.raw_ratio[kind] = (statistics.median(ratios), min(ratios), max(ratios))
            figure = (
                f"{statistics.median(sps[kind]):.3f} samples/s ({_spread(sps[kind])}); ratio to the round's raw loop: "
                f"median {statistics.median(ratios):.4f} ({min(ratios):.4f}..{max(ratios):.4f})"
            )
            self.rows.append(Row("vs raw loop", cond, kind, figure, ", ".join(sorted(verdicts[kind]))))


def _pool(runs: Sequence[IssueDelay], name: str) -> list[float]:
    return [v for d in runs for v in getattr(d, name)]


def _spread(values: Sequence[float], digits: int = 3) -> str:
    return f"min {min(values):,.{digits}f}, max {max(values):,.{digits}f}"


# 2. The command ------------------------------------------------------------------------------------------------
def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: allowed: a comma-separated list of numbers >= 0 (ms)")
    return values


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"{text!r}: allowed: a comma-separated list of {', '.join(allowed)}")
        return values

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.sut_overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--parts", type=_choices(PARTS), default=list(PARTS))
    p.add_argument("--kinds", type=_choices(KINDS), default=list(KINDS), help="SUT kinds (default: both)")
    p.add_argument("--latencies-ms", type=_floats, default=[0.0, 1.0], help="fake backend latency per batch")
    p.add_argument("--gil-hold-ms", type=_floats, default=[0.0, 2.0, 10.0], help="issue-delay part: GIL held per batch")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=1.0, help="Server: the batcher's max wait")
    p.add_argument("--image-px", type=int, default=16, help="fake backend image height and width")
    p.add_argument(
        "--no-reuse-images",
        dest="reuse_images",
        action="store_false",
        help="the fake backend draws each sample's image (about 20 us each) instead of handing back one batch made "
        "once (backend.reuse_images, the null backend: the default)",
    )
    p.add_argument("--offline-duration-ms", type=int, default=2000)
    p.add_argument("--offline-repeats", type=int, default=3, help="Offline runs per SUT and latency")
    p.add_argument("--offline-start-qps", type=float, default=2000.0, help="first offline_expected_qps")
    p.add_argument("--server-duration-ms", type=int, default=2000)
    p.add_argument("--server-min-queries", type=int, default=1000)
    p.add_argument("--server-latency-ms", type=float, default=20.0, help="Server p99 latency target")
    p.add_argument("--server-steps", type=int, default=5, help="Server runs per search")
    p.add_argument("--server-start-qps", type=float, default=0.0, help="0: half the Offline figure (else 500)")
    p.add_argument("--issue-qps", type=float, default=200.0)
    p.add_argument("--issue-latency-ms", type=float, default=1.0)
    p.add_argument("--issue-duration-ms", type=int, default=3000)
    p.add_argument("--sleep-control", action="store_true", help="issue-delay part: each GIL hold also as a sleep")
    p.add_argument("--issue-repeats", type=int, default=3, help="issue-delay runs per condition, pooled")
    p.add_argument("--issue-target-latency-ms", type=float, default=100.0, help="issue-delay runs: p99 target")
    p.add_argument("--raw-model", default="tiny")
    p.add_argument("--raw-samples", type=int, default=64)
    p.add_argument("--raw-rounds", type=int, default=2)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # a bad flag: argparse's one error line and exit code 2
    positive = [
        "batch_size",
        "image_px",
        "offline_duration_ms",
        "offline_repeats",
        "offline_start_qps",
        "server_duration_ms",
    ]
    positive += [
        "server_min_queries",
        "server_steps",
        "issue_qps",
        "issue_duration_ms",
        "issue_repeats",
        "raw_samples",
        "raw_rounds",
    ]
    for name in positive:
        if not getattr(args, name) > 0:
            print(f"error: --{name.replace('_', '-')} must be > 0, got {getattr(args, name)}", file=sys.stderr)
            return 2
    for name in ("max_wait_ms", "issue_latency_ms", "server_latency_ms", "server_start_qps", "issue_target_latency_ms"):
        if not (np.isfinite(getattr(args, name)) and getattr(args, name) >= 0):
            print(f"error: --{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    makers, missing = sut_makers(args.kinds)
    load_before = os.getloadavg()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sut-overhead-") as tmp:
        bench = Bench(args, makers, missing, Path(tmp))
        try:
            if makers:
                for part in PARTS:
                    if part in args.parts:
                        getattr(bench, part.replace("-", "_"))()
        except HarnessError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except RunFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            if exc.loadgen_alive:
                sys.stderr.flush()
                os._exit(1)
            return 1
    load_after = os.getloadavg()
    print("conditions:")
    for line in conditions(args, makers, missing):
        print(f"  {line}")
    print(f"  load average (1/5/15 min): before {_load(load_before)}, after {_load(load_after)}; "
          f"wall {time.perf_counter() - start:.0f} s, {bench._runs} fake-backend LoadGen runs")  # fmt: skip
    print()
    for line in table(bench.rows):
        print(line)
    print()
    print("targets:")
    for line in targets(bench):
        print(f"  {line}")
    return 0


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
