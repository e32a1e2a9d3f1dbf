"""`python -m harness sweep --resolutions 512,1024 --steps 4,8 --batch-sizes 1,4`: speed, memory and quality
over resolutions x steps x batch sizes.

Each point is a full harness run in its own process (as `scale`), with `--set model.height=R
model.width=R model.steps=N sut.batch_size=B sut.max_batch_size=B`; its summary.json gives the row:
- SingleStream (once per resolution and steps, batch 1): seconds per image = mean latency, and the
  latency percentiles; images per second = LoadGen's SingleStream figure;
- Offline (per batch size): images per second = LoadGen's samples per second; no seconds per image or
  latency percentiles (Offline latencies count from the one query's issue, not per image);
- Server (per batch size, its dynamic batch limit): mean latency and percentiles, completed samples/s.
Peak memory: CUDA reserved (else allocated) where torch used CUDA in the run's process, else the
largest resident set of the run's processes (itself, or its worker processes).

--ramp (off by default: it adds up to log2(max batch) + 1 Offline runs per resolution and steps) runs
Offline at batch 1, 2, 4, ... up to --max-batch until throughput gains less than --ramp-min-gain (3%)
over the best so far, or a run runs out of memory (status "oom"; the sweep goes on), and marks the
best batch size. Offline runs already made for --batch-sizes are reused. Each Offline run after the
first of a resolution and steps gets loadgen.offline_expected_qps = 1.5 x the best throughput so far (a
--set of your own wins), so LoadGen issues at least min_duration's worth of samples.

Validity: every row carries LoadGen's verdict (loadgen_validity) and its reason (invalid_reason, early
stopping's included). A performance run LoadGen calls INVALID for a cause the run's own figures cure (too
short for its measured rate, too few queries for early stopping) runs once more with them (a
--set of your own wins); a point still INVALID says so in the terminal, the table and the report.
Without a terminal, a plain "still running" line every few seconds shows that a point is under way.

--batch-sizes 1,fit: "fit" is the largest batch that fits in memory, found per resolution and steps
by `python -m harness fit` (one process, the model loaded once, batch 1, 2, 4, ... up to --max-batch
until a call runs out of memory, then bisection; one denoising step per call, as the peak memory does
not grow with the steps; within --fit-memory-fraction of the device's memory, default 0.85). That batch
joins the Offline batch sizes, and the ramp stops at it, once a full run at it (Offline; Server where
the plan has no Offline) has run: should that run out of memory, the sweep steps down to 3/4 of the
batch, at most twice, and records in fit.csv the batch that ran (full_run_batch) and those that did not
(full_run_oom; the fit row's status is "oom" where none ran). A batch size listed as a number runs as
listed. Not for torch-compile or tensorrt (they build per batch size): probe with diffusers-eager.

An Offline point at batch B issues at least 2 x B samples (loadgen.min_query_count is raised to that
where the run's settings ask for fewer), so at least two full batches make its throughput.

--quality adds one accuracy-mode run per resolution and steps: its CLIP score goes into every row of
that point, accuracy.json's by_category into by_category.

Writes sweep.json (rows, ramp, fit, by_category, quality), sweep.csv, ramp.csv and fit.csv into the sweep
directory and prints the table; then report.md/html where harness.report is installed. Exit code 0
when every run is ok (or ran out of memory in the ramp), 1 otherwise, 2 for bad input.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from backends.registry import has_fixed_shapes
from harness.commands._child import run_child
from harness.commands._shared import fail
from harness.config import resolve_config
from harness.errors import ConfigError, HarnessError
from harness.loadgen.settings import build_test_settings
from harness.measure.cost import acceptance
from harness.run.model import latent_shape
from harness.run.run_dir import write_json
from harness.run.summary import RunSummary, as_summary, verdict_of
from harness.studies.batch_fit import OUT_OF_MEMORY as OOM
from harness.studies.batch_ramp import run_ramp
from harness.studies.rerun import rerun_sets
from harness.studies.rows import (
    FIT_COLUMNS,
    QUALITY_COLUMNS,
    RAMP_COLUMNS,
    ROW_COLUMNS,
    CategoryRow,
    QualityRow,
    RampRow,
    SweepRow,
)
from harness.studies.sweep_plan import SweepPlan, load_plan, override

FIT_STEP_DOWNS = 2  # how often a sweep steps down from a fitted batch that ran out of memory in a full run
# An Offline point's expected rate is the best rate measured so far at its resolution and steps times this:
# a larger batch usually runs faster, and a guess too high only lengthens the run, while one too low ends it
# before LoadGen's minimum duration (INVALID).
EXPECTED_QPS_HEADROOM = 1.5


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--plan", metavar="FILE.toml", help="the sweep's lists in a TOML file (see harness/studies/sweep_plan.py)"
    )
    p.add_argument("--resolutions", help="square sides in pixels, e.g. 512,1024 (default: the model's)")
    p.add_argument("--steps", help="denoising steps, e.g. 4,8 (default: the model's)")
    p.add_argument(
        "--batch-sizes", help="Offline batch sizes, e.g. 1,4 or 1,fit (fit: the largest that fits; default 1)"
    )
    p.add_argument("--scenarios", help="default SingleStream,Offline")
    p.add_argument("--ramp", action=argparse.BooleanOptionalAction, default=None, help="batch-size ramp (default off)")
    p.add_argument("--max-batch", help="largest batch the ramp and the fit search try (default 64)")
    p.add_argument(
        "--fit-memory-fraction",
        type=str,
        help="share of the device's memory the fit search may use (default 0.85; python -m harness fit)",
    )
    p.add_argument(
        "--ramp-min-gain",
        type=str,
        help="the ramp stops when throughput gains less than this over the best so far (default 0.03 = 3%%)",
    )
    p.add_argument(
        "--quality", action=argparse.BooleanOptionalAction, default=None, help="accuracy run per point (CLIP)"
    )
    p.add_argument("--model", default="tiny")
    p.add_argument("--backend", default=None)
    p.add_argument("--config", metavar="FILE.toml", default=None, help="passed to every run")
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="passed to every run")
    return p


def _plan(args: argparse.Namespace) -> SweepPlan:
    plan = load_plan(args.plan) if args.plan else SweepPlan()
    gain = _number("--ramp-min-gain (0.03 = 3%)", args.ramp_min_gain)
    fraction = _number("--fit-memory-fraction (0.85 = 85% of the device)", args.fit_memory_fraction)
    return override(
        plan,
        {
            "resolutions": args.resolutions,
            "steps": args.steps,
            "batch_sizes": args.batch_sizes,
            "scenarios": args.scenarios,
            "ramp": args.ramp,
            "max_batch": args.max_batch,
            "ramp_min_gain": gain,
            "fit_memory_fraction": fraction,
            "quality": args.quality,
        },
    )


def _number(flag: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{flag} must be a number, got {text!r}") from None


def point_sets(resolution: int, steps: int, batch_size: int) -> list[str]:
    return [
        f"model.height={resolution}",
        f"model.width={resolution}",
        f"model.steps={steps}",
        f"sut.batch_size={batch_size}",
        f"sut.max_batch_size={batch_size}",
    ]


def _resolve_defaults(args: argparse.Namespace, plan: SweepPlan) -> SweepPlan:
    """Fill the model's own resolution and steps where the plan has none; check every point's config
    (latent shape included) here, so bad input stops the sweep before its first run."""
    cli = {"run.backend": args.backend}
    cfg = resolve_config(args.model, args.config, cli, args.sets)
    if plan.fit and has_fixed_shapes(cfg.run.backend):
        raise ConfigError(
            f"--batch-sizes fit cannot probe backend {cfg.run.backend!r} (it builds for fixed batch sizes); "
            "find the size with --backend diffusers-eager, then pass it as a number"
        )
    resolutions = plan.resolutions
    if not resolutions:
        if cfg.model.height != cfg.model.width:
            raise ConfigError(
                f"model {args.model!r} is {cfg.model.height}x{cfg.model.width}; the sweep measures square "
                "images: pass --resolutions"
            )
        resolutions = (cfg.model.height,)
    plan = override(plan, {"resolutions": list(resolutions), "steps": list(plan.steps or (cfg.model.steps,))})
    for r in plan.resolutions:
        for n in plan.steps:
            for b in {*plan.batch_sizes, plan.max_batch}:
                latent_shape(resolve_config(args.model, args.config, cli, [*point_sets(r, n, b), *args.sets]))
    # LoadGen settings too: the sweep reads them itself (the Offline floor), and a bad one stops it here.
    for scenario in plan.scenarios:
        build_test_settings(resolve_config(args.model, args.config, {**cli, "run.scenario": scenario}, args.sets))
    return plan


class Sweep:
    def __init__(self, args: argparse.Namespace, plan: SweepPlan, out: Path) -> None:
        self.args, self.plan, self.out = args, plan, out
        self.done: dict[tuple[int, int, int, str, str], dict[str, Any]] = {}  # (r, n, b, scenario, mode) -> result
        self.best_ips: dict[tuple[int, int], float] = {}  # Offline, per (resolution, steps)
        # the acceptance rule for cost per accepted image, applied to each quality run's per-image CLIP
        self.accept_clip_min = resolve_config(args.model, args.config, None, args.sets).cost.accept_clip_min

    def run(self, resolution: int, steps: int, batch_size: int, scenario: str, mode: str = "performance") -> dict:
        key = (resolution, steps, batch_size, scenario, mode)
        if key not in self.done:
            self.done[key] = self._run_child(*key)
        return self.done[key]

    def _run_child(self, resolution: int, steps: int, batch_size: int, scenario: str, mode: str) -> dict[str, Any]:
        label = f"r{resolution}-s{steps}-b{batch_size}-{scenario}-{mode}"
        sets = point_sets(resolution, steps, batch_size)
        best = self.best_ips.get((resolution, steps))
        if scenario == "Offline" and mode == "performance" and best:
            # LoadGen issues 1.1 x expected rate x min duration samples: from the best rate so far, with headroom
            sets.append(f"loadgen.offline_expected_qps={best * EXPECTED_QPS_HEADROOM:.4f}")
        sets += self.args.sets  # the user's --set comes after the point's, so it wins
        if scenario == "Offline" and mode == "performance":
            sets += self._full_batches(sets, batch_size)
        result = self._launch(label, scenario, mode, sets)
        again = rerun_sets(scenario, result["summary"]) if mode == "performance" else []
        again = [s for s in again if s.split("=")[0] not in {u.split("=")[0] for u in self.args.sets}]
        if again:  # LoadGen said what it lacked (a longer run, more queries): one more run with the measured figures
            print(f"{label}: {_verdict_text(result)}; running it again with {', '.join(again)}", flush=True)
            result = self._launch(label, scenario, mode, [*sets, *again])
        if scenario == "Offline" and mode == "performance" and result["status"] == "ok":
            ips = result["summary"].samples_per_second or 0.0
            self.best_ips[(resolution, steps)] = max(ips, best or 0.0)
        shown = result["error"] or f"{_fmt(_images_per_second(result['summary']))} images/s"
        verdict = f", {_verdict_text(result)}" if mode == "performance" and result["status"] == "ok" else ""
        status = "finished" if verdict and "INVALID" in verdict else result["status"]  # never "ok" for INVALID
        print(f"{label}: {status}{verdict}, {shown}", flush=True)
        return result

    def _launch(self, label: str, scenario: str, mode: str, sets: list[str]) -> dict[str, Any]:
        """One child `python -m harness` run; a plain line every few seconds while it runs (see Heartbeat)."""
        a = self.args
        runs_dir = self.out / "runs" / label
        cmd = ["--model", a.model, "--scenario", scenario, "--mode", mode]
        cmd += ["--no-progress", "--output-dir", str(runs_dir)]
        if a.backend:
            cmd += ["--backend", a.backend]
        if a.config:
            cmd += ["--config", a.config]
        for item in sets:
            cmd += ["--set", item]
        child = run_child(cmd, output_dir=runs_dir, heartbeat=label)
        return _result(child, child.run_dir / "summary.json" if child.run_dir else None)

    def _full_batches(self, sets: list[str], batch_size: int) -> list[str]:
        """The setting that makes an Offline run issue at least two full batches, where it would issue fewer."""
        a = self.args
        cli = {"run.backend": a.backend, "run.scenario": "Offline"}
        settings = build_test_settings(resolve_config(a.model, a.config, cli, sets))
        return [] if settings.min_query_count >= 2 * batch_size else [f"loadgen.min_query_count={2 * batch_size}"]

    def fit(self, resolution: int, steps: int) -> dict[str, Any]:
        """`python -m harness fit` at this resolution and step count: the largest batch that fits."""
        a = self.args
        runs_dir = self.out / "runs" / f"r{resolution}-s{steps}-fit"
        cmd = ["fit", "--model", a.model, "--output-dir", str(runs_dir)]
        cmd += ["--max-batch", str(self.plan.max_batch), "--memory-fraction", str(self.plan.fit_memory_fraction)]
        if a.backend:
            cmd += ["--backend", a.backend]
        if a.config:
            cmd += ["--config", a.config]
        for item in [f"model.height={resolution}", f"model.width={resolution}", f"model.steps={steps}", *a.sets]:
            cmd += ["--set", item]
        child = run_child(cmd, output_dir=runs_dir)
        path = child.run_dir / "fit.json" if child.run_dir else None
        entry: dict[str, Any] = {
            "resolution": resolution,
            "steps": steps,
            "largest_batch": 0,
            "limited_by": None,
            "full_run_batch": None,
            "full_run_oom": "",
        }
        calls: list[dict[str, Any]] = []
        if path is not None and path.is_file():
            fit = json.loads(path.read_text())
            calls = fit.get("probes") or []
            entry.update({k: fit.get(k) for k in FIT_COLUMNS if k in fit})
            entry.update(probes=len(calls), run_dir=str(path.parent))  # each call's figures stay in fit.json
        if child.returncode == 0:
            entry.update(status="ok", error=None)
        else:
            failed = [c["error"] for c in calls if c.get("status") == "error"]  # a call's own error says most
            entry.update(status="error", error=failed[-1][-500:] if failed else _stderr_error(child))
        entry.setdefault("run_dir", str(path.parent) if path else "")
        print(
            f"r{resolution}-s{steps}-fit: {entry['status']}, largest batch {entry['largest_batch']} "
            f"({entry['limited_by']}){'' if entry['error'] is None else ': ' + entry['error']}",
            flush=True,
        )
        return entry

    def settle_fitted_batch(self, resolution: int, steps: int, fit: dict[str, Any]) -> int:
        """A full run at the fitted batch (Offline, which fills every batch, where the plan has it; else
        Server); where it runs out of memory, one at 3/4 of the batch, at most FIT_STEP_DOWNS times. Returns
        the last batch tried and records the outcome in the fit entry (status "oom" where none ran); the
        runs are cached, so the scenario loop reuses them."""
        scenario = "Offline" if "Offline" in self.plan.scenarios else "Server"
        batch_size = fit["largest_batch"]
        result = self.run(resolution, steps, batch_size, scenario)
        out_of_memory: list[int] = []
        while result["status"] == "oom":
            out_of_memory.append(batch_size)
            if len(out_of_memory) > FIT_STEP_DOWNS or batch_size == 1:
                break
            smaller = max(1, batch_size * 3 // 4)
            print(
                f"r{resolution}-s{steps}-fit: a full {scenario} run at batch {batch_size} ran out of memory; "
                f"trying {smaller}",
                flush=True,
            )
            batch_size = smaller
            result = self.run(resolution, steps, batch_size, scenario)
        fit.update(
            full_run_batch=batch_size if result["status"] == "ok" else None,
            full_run_oom=",".join(map(str, out_of_memory)),
        )
        if result["status"] == "oom" and fit["status"] == "ok":
            fit.update(status="oom", error=f"full {scenario} runs ran out of memory at batch {fit['full_run_oom']}")
        return batch_size


class _Finished(Protocol):
    """A finished child run: a ChildRun, or a CompletedProcess."""

    @property
    def returncode(self) -> int: ...

    @property
    def stderr(self) -> str: ...


def _result(proc: _Finished, summary_path: Path | None) -> dict[str, Any]:
    """status ok / oom / failed / error, the error line, the summary (a RunSummary, when the run wrote one)."""
    if summary_path is not None and summary_path.is_file():
        summary = RunSummary.read(summary_path)
        error = summary.error
        status = summary.status
        if status != "ok" and error and OOM.search(error):
            status = "oom"
        return {"status": status, "error": error, "summary": summary, "run_dir": str(summary_path.parent)}
    # No summary: the run stopped before LoadGen (for example out of memory while loading or warming up).
    status = "oom" if OOM.search(proc.stderr) else "error"
    run_dir = str(summary_path.parent) if summary_path is not None else ""
    return {"status": status, "error": _stderr_error(proc), "summary": None, "run_dir": run_dir}


def _verdict_text(result: dict[str, Any]) -> str:
    return f"LoadGen {verdict_of(result['summary']).label()}"


def _stderr_error(proc: _Finished) -> str:
    """A child's reason for failing: its last `error:` line, else its last line, else its exit code."""
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or [f"exit code {proc.returncode}"])[-1].removeprefix("error: ")[-500:]


def peak_memory_mib(summary: RunSummary | Mapping[str, Any] | None) -> float | None:
    s = as_summary(summary)
    return None if s is None else s.peak_memory_mib()


def _images_per_second(summary: RunSummary | None) -> float | None:
    value = summary.samples_per_second if summary is not None else None
    return float(value) if value else None


def row(resolution: int, steps: int, batch_size: int, scenario: str, result: dict[str, Any]) -> SweepRow:
    s: RunSummary | None = result["summary"] if result["status"] == "ok" else None  # a failed run times empty answers
    lat = s.latency_ms if s is not None else {}
    per_image = scenario != "Offline"  # Offline latencies count from the one query's issue
    mean = lat.get("mean")
    cost = (s.cost if s is not None else None) or {}
    first = s.time_to_first_image_s if s is not None else {}
    verdict = verdict_of(result["summary"])  # every figure carries LoadGen's verdict and its reason
    return SweepRow(
        resolution=resolution,
        steps=steps,
        batch_size=batch_size,
        scenario=scenario,
        seconds_per_image=mean / 1e3 if per_image and mean else None,
        images_per_second=_images_per_second(s),
        latency_p50_ms=lat.get("p50") if per_image else None,
        latency_p95_ms=lat.get("p95") if per_image else None,
        latency_p99_ms=lat.get("p99") if per_image else None,
        peak_memory_mib=peak_memory_mib(result["summary"]),
        clip_score=None,
        cost_per_image_usd=cost.get("cost_per_image_usd"),  # with cost.gpu_hour_usd or cost.instance
        images_per_usd=cost.get("images_per_usd"),
        cost_per_accepted_image_usd=None,  # filled from the point's quality run (its per-image CLIP)
        first_image_cold_s=first.get("cold"),
        first_image_warm_s=first.get("warm"),
        loadgen_validity=verdict.validity,
        invalid_reason=verdict.reason or None,
        status=result["status"],
        error=result["error"],
        run_dir=result["run_dir"],
    )


def _quality(sweep: Sweep, resolution: int, steps: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One accuracy-mode run: its CLIP and FID, and accuracy.json's by_category (when the scorer wrote it)."""
    result = sweep.run(resolution, steps, min(sweep.plan.batch_sizes or (1,)), "Offline", "accuracy")
    accuracy = {}
    if result["run_dir"] and (Path(result["run_dir"]) / "accuracy.json").is_file():
        accuracy = json.loads((Path(result["run_dir"]) / "accuracy.json").read_text())
    status = result["status"]
    summary: RunSummary | None = result["summary"]
    if status == "ok" and accuracy.get("CLIP_SCORE") is None:
        status, result["error"] = "error", ((summary.accuracy if summary else None) or {}).get("error")
    lpips = ((summary.quality if summary else None) or {}).get("lpips_diversity") or {}
    clip_min = sweep.accept_clip_min
    accepted = acceptance(clip_min, accuracy.get("clip_scores")) if clip_min != 0 else {}
    entry = QualityRow(
        resolution=resolution,
        steps=steps,
        clip_score=accuracy.get("CLIP_SCORE"),
        fid_score=accuracy.get("FID_SCORE"),
        lpips_diversity=lpips.get("mean"),
        accepted_share=accepted.get("accepted_share"),
        standin=accuracy.get("standin"),
        status=status,
        error=result["error"],
        run_dir=result["run_dir"],
    )
    by_category = [
        CategoryRow(resolution, steps, name, clip_score=v.get("clip_score"), count=v.get("count")).to_json()
        for name, v in (accuracy.get("by_category") or {}).items()
    ]
    return entry.to_json(), by_category


def run_sweep(args: argparse.Namespace, plan: SweepPlan, out: Path) -> dict[str, Any]:
    sweep = Sweep(args, plan, out)
    rows: list[dict[str, Any]] = []
    ramp: list[dict[str, Any]] = []
    fits: list[dict[str, Any]] = []
    by_category: list[dict[str, Any]] = []
    quality: list[dict[str, Any]] = []
    for r in plan.resolutions:
        for n in plan.steps:
            # 1. Quality first: its CLIP score goes into this point's rows.
            clip = None
            if plan.quality:
                entry, categories = _quality(sweep, r, n)
                quality.append(entry)
                by_category += categories
                clip = entry["clip_score"]
            # 2. The largest batch that fits joins this point's batch sizes and caps its ramp, once a full run
            #    at it (or, stepping down, at a smaller one) has run; a size the user listed runs as asked.
            batch_sizes, max_batch = plan.batch_sizes, plan.max_batch
            if plan.fit:
                fits.append(sweep.fit(r, n))
                fitted = fits[-1]["largest_batch"] or 0
                batched = any(s != "SingleStream" for s in plan.scenarios)
                if fitted and batched and fitted not in batch_sizes:
                    fitted = sweep.settle_fitted_batch(r, n, fits[-1])
                    if fits[-1]["status"] == "oom":  # none ran: left out, and the ramp stays below the last
                        fitted, max_batch = 0, max(1, fitted - 1)
                    # else it ran, or failed otherwise and its row says why
                if fitted:
                    batch_sizes, max_batch = tuple(sorted({*batch_sizes, fitted})), fitted
            # 3. Latency and throughput per scenario and batch size.
            share = quality[-1]["accepted_share"] if plan.quality else None
            for scenario in plan.scenarios:
                for b in (1,) if scenario == "SingleStream" else batch_sizes:
                    point = dataclasses.replace(row(r, n, b, scenario, sweep.run(r, n, b, scenario)), clip_score=clip)
                    if share and point.cost_per_image_usd:
                        point = dataclasses.replace(point, cost_per_accepted_image_usd=point.cost_per_image_usd / share)
                    rows.append(point.to_json())
            # 4. The batch ramp (Offline), reusing the Offline runs above.
            if plan.ramp:

                def measure(b: int, r: int = r, n: int = n) -> dict[str, Any]:
                    res = sweep.run(r, n, b, "Offline")
                    ok = res["status"] == "ok"
                    verdict = verdict_of(res["summary"])
                    return {
                        "images_per_second": _images_per_second(res["summary"]) if ok else None,
                        "peak_memory_mib": peak_memory_mib(res["summary"]),
                        "loadgen_validity": verdict.validity,
                        "invalid_reason": verdict.reason or None,
                        "status": res["status"],
                        "error": res["error"],
                    }

                points = run_ramp(measure, max_batch, plan.ramp_min_gain)
                ramp += [RampRow(resolution=r, steps=n, **p).to_json() for p in points]
    return {"rows": rows, "ramp": ramp, "fit": fits, "by_category": by_category, "quality": quality}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table_lines(result: dict[str, Any]) -> list[str]:
    head = (
        "resolution | steps | scenario     | batch | seconds per image | images per second | peak memory MiB | "
        "CLIP  | LoadGen"
    )
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        status = "" if r["status"] == "ok" else f"  [{r['status']}: {r['error']}]"
        validity = r.get("loadgen_validity") or "-"
        if validity == "INVALID":
            validity += f" ({r.get('invalid_reason')})"
        lines.append(
            f"{r['resolution']:>10} | {r['steps']:>5} | {r['scenario']:<12} | {r['batch_size']:>5} | "
            f"{_fmt(r['seconds_per_image'], 4):>17} | {_fmt(r['images_per_second']):>17} | "
            f"{_fmt(r['peak_memory_mib'], 0):>15} | {_fmt(r['clip_score'], 2):<5} | {validity}{status}"
        )
    invalid = [r for r in result["rows"] if r.get("loadgen_validity") == "INVALID"]
    if invalid:
        lines += [
            "",
            f"{len(invalid)} of {len(result['rows'])} points are LoadGen INVALID: their figures are not results",
        ]
    if result["ramp"]:
        lines += ["", "batch ramp (Offline): resolution | steps | batch | images per second | peak memory MiB"]
        for p in result["ramp"]:
            mark = "  <- best" if p["best"] else ("" if p["status"] == "ok" else f"  [{p['status']}: {p['error']}]")
            lines.append(
                f"{p['resolution']:>10} | {p['steps']:>5} | {p['batch_size']:>5} | "
                f"{_fmt(p['images_per_second']):>17} | {_fmt(p['peak_memory_mib'], 0):>15}{mark}"
            )
    if result["fit"]:
        lines += [
            "",
            "largest batch that fits: resolution | steps | batch | limited by | peak memory MiB | "
            "full run at | full run out of memory at",
        ]
        for f in result["fit"]:
            status = "" if f["status"] == "ok" else f"  [{f['status']}: {f['error']}]"
            lines.append(
                f"{f['resolution']:>10} | {f['steps']:>5} | {f['largest_batch']:>5} | {_fmt(f['limited_by']):<10} | "
                f"{_fmt(f.get('peak_memory_mib'), 0):>15} | {_fmt(f.get('full_run_batch')):>11} | "
                f"{f.get('full_run_oom') or '-'}{status}"
            )
    if result["quality"]:
        lines += ["", "quality: resolution | steps | CLIP | FID"]
        for q in result["quality"]:
            lines.append(
                f"{q['resolution']:>10} | {q['steps']:>5} | {_fmt(q['clip_score'], 3)} | {_fmt(q['fid_score'], 2)}"
                + ("  (STAND-IN scorers: not real CLIP / FID)" if q.get("standin") else "")
            )
    return lines


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _write_report(out: Path) -> None:
    try:
        from harness.report import write_report

        md, html = write_report([out], out)
    except ImportError as exc:  # a machine without the report's libraries still keeps sweep.json and the CSVs
        print(f"report not written: {exc}")
        return
    print(f"report: {md}, {html}")


def _weights(args: argparse.Namespace) -> str:
    """model.weights of every run ("random" flags the sweep as architecture-only in its report)."""
    return str(resolve_config(args.model, args.config, {"run.backend": args.backend}, args.sets).model.weights)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = _resolve_defaults(args, _plan(args))
    except HarnessError as exc:
        return fail(str(exc))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.output_dir) / f"{stamp}-sweep-{args.model}-{args.backend or 'default'}"
    out.mkdir(parents=True, exist_ok=False)
    result = run_sweep(args, plan, out)
    write_json(
        out / "sweep.json",
        {**result, "model": args.model, "backend": args.backend, "weights": _weights(args), "plan": asdict(plan)},
    )
    _write_csv(out / "sweep.csv", ROW_COLUMNS, result["rows"])
    _write_csv(out / "ramp.csv", RAMP_COLUMNS, result["ramp"])
    if result["fit"]:
        _write_csv(out / "fit.csv", FIT_COLUMNS, result["fit"])
    if result["quality"]:
        _write_csv(out / "quality.csv", QUALITY_COLUMNS, result["quality"])
    print("\n".join(table_lines(result)))
    _write_report(out)
    print(f"sweep results: {out}")
    statuses = [r["status"] for r in result["rows"] + result["quality"] + result["fit"]] + [
        p["status"] for p in result["ramp"] if p["status"] != "oom"
    ]
    return 0 if all(s == "ok" for s in statuses) else 1
