"""`python -m harness scale --workers 1,2,4`: the same workload at each worker count.

Each point is a full harness run in its own process (a pool of N worker processes, or N Ray actors
with --ray ADDRESS), so one run's memory and threads never leak into the next. Writes scale.json,
scale.csv and scale.png (throughput and efficiency per worker count) into a scale directory:
speedup = throughput(N) / throughput(1), efficiency = speedup / N (Offline only: a Server run
delivers its target rate while the workers keep up, so its scaling shows in the latency columns).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path
from typing import Any

from harness.commands._child import run_child
from harness.config import SCENARIOS
from harness.run.run_dir import write_json
from harness.run.summary import RunSummary
from harness.studies.rerun import rerun_sets
from harness.studies.rows import SCALE_COLUMNS as COLUMNS
from harness.studies.rows import ScaleRow


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated worker counts, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be >= 1, got {text!r}")
    return values


def _scenarios(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in SCENARIOS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {bad or text!r}; choose from {', '.join(SCENARIOS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness scale", description=__doc__)
    p.add_argument("--workers", type=_int_list, default=[1, 2], help="worker counts, e.g. 1,2,4 (default 1,2)")
    p.add_argument("--scenario", type=_scenarios, default=["Offline"], help="e.g. Offline or Offline,Server")
    p.add_argument("--model", default="tiny")
    p.add_argument("--backend", default=None)
    p.add_argument("--ray", metavar="ADDRESS", default="", help="use Ray actors: auto, ray://host:port or local")
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    return p


def _run_point(args: argparse.Namespace, scenario: str, n: int, runs_dir: Path, extra_sets: list[str]) -> RunSummary:
    cmd = ["--model", args.model, "--scenario", scenario, "--no-progress"]
    cmd += ["--output-dir", str(runs_dir)]
    if args.backend:
        cmd += ["--backend", args.backend]
    cmd += ["--set", f"workers.count={n}"]
    cmd += ["--set", f"workers.ray_address={args.ray}"] if args.ray else ["--set", "workers.processes=true"]
    for item in [*extra_sets, *args.sets]:  # the user's --set comes last, so it wins
        cmd += ["--set", item]
    child = run_child(cmd, output_dir=runs_dir, heartbeat=f"{scenario} workers={n}")
    if child.returncode == 2 or child.run_dir is None:
        raise SystemExit(f"error: the {scenario} run with {n} worker(s) did not start:\n{child.stderr.strip()[-2000:]}")
    summary = RunSummary.read(child.run_dir / "summary.json")
    verdict = summary.verdict()
    status = "finished" if verdict.validity == "INVALID" else summary.status  # never "ok" for an INVALID point
    print(
        f"{scenario} workers={n}: {summary.samples_per_second} samples/s ({status}, LoadGen {verdict.label()})",
        flush=True,
    )
    return summary


def _expected_qps(scenario: str, n: int, per_worker: float | None) -> list[str]:
    """Offline issues target_qps x min_duration samples: with the one-worker figure as the target, N workers
    finish early and LoadGen calls the run INVALID (min duration not met). Scale the target with N."""
    if scenario != "Offline" or not per_worker:
        return []
    return [f"loadgen.offline_expected_qps={per_worker * n:.4f}"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.output_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-scale-{args.model}-{args.backend or 'default'}"
    out.mkdir(parents=True, exist_ok=False)
    rows: list[dict[str, Any]] = []
    for scenario in args.scenario:
        base: float | None = None
        for n in args.workers:
            sets = _expected_qps(scenario, n, base)
            s = _run_point(args, scenario, n, out / "runs", sets)
            again = [x for x in rerun_sets(scenario, s) if x.split("=")[0] not in {u.split("=")[0] for u in args.sets}]
            if again:  # LoadGen said what it lacked: one more run with the figures the INVALID one measured
                print(f"{scenario} workers={n}: running it again with {', '.join(again)}", flush=True)
                s = _run_point(args, scenario, n, out / "runs", [*sets, *again])
            verdict = s.verdict()
            sps = s.samples_per_second
            if n == args.workers[0] and sps:
                base = sps / n  # per-worker throughput of the first (smallest) count
            # Only Offline measures capacity: Server runs at its target rate and SingleStream keeps
            # one query in flight, so their scaling shows in latency, not throughput.
            scales = scenario == "Offline" and sps and base
            speedup = sps / (base * args.workers[0]) if scales else None
            row = ScaleRow(
                scenario=scenario,
                workers=n,
                samples_per_second=sps,
                speedup=round(speedup, 4) if speedup else None,
                efficiency=round(sps / (base * n), 4) if scales and sps and base else None,
                latency_p50_ms=s.latency_ms.get("p50"),
                latency_p99_ms=s.latency_ms.get("p99"),
                result_valid=s.result_valid,
                loadgen_validity=verdict.validity,
                invalid_reason=verdict.reason or None,
                status=s.status,
                run_dir=s.run_dir,
            )
            rows.append(row.to_json())
    write_json(
        out / "scale.json",
        {"model": args.model, "backend": args.backend, "ray": args.ray, "rows": rows, "cpu_count": os.cpu_count()},
    )
    with (out / "scale.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, out / "scale.png")
    from harness.report import write_report

    md, html = write_report([out], out)
    for r in rows:
        mark = "" if r["loadgen_validity"] == "VALID" else f"  [LoadGen {r['loadgen_validity']}: {r['invalid_reason']}]"
        print(
            f"{r['scenario']:>12} workers={r['workers']}: {r['samples_per_second']} samples/s, "
            f"speedup {r['speedup']}, efficiency {r['efficiency']}{mark}"
        )
    print(f"report: {md}, {html}")
    print(f"scale results: {out}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for scenario in sorted({r["scenario"] for r in rows}):
        pts = [r for r in rows if r["scenario"] == scenario and r["samples_per_second"]]
        (line,) = ax1.plot(
            [r["workers"] for r in pts], [r["samples_per_second"] for r in pts], marker="o", label=scenario
        )
        _hollow_invalid(ax1, pts, "samples_per_second", line.get_color())
        eff = [r for r in pts if r["efficiency"] is not None]
        if eff:
            (line,) = ax2.plot([r["workers"] for r in eff], [r["efficiency"] for r in eff], marker="o", label=scenario)
            _hollow_invalid(ax2, eff, "efficiency", line.get_color())
    ax1.set(xlabel="workers", ylabel="samples/s", title="throughput")
    ax2.set(xlabel="workers", ylabel="efficiency", title="scaling efficiency", ylim=(0, 1.2))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _hollow_invalid(ax: Any, pts: list[dict[str, Any]], key: str, color: str) -> None:
    """LoadGen INVALID points drawn as large hollow markers over the line, named in the legend."""
    bad = [r for r in pts if r.get("loadgen_validity") != "VALID"]
    if bad:
        ax.plot(
            [r["workers"] for r in bad],
            [r[key] for r in bad],
            marker="o",
            markersize=12,
            markerfacecolor="white",
            markeredgecolor=color,
            linestyle="none",
            label="LoadGen INVALID (hollow)",
        )
