"""The tables of run directories: test conditions, results, queueing, stages, quality, cost, comparison.

Each builder takes every run of the report and returns one Table with a `run` column first (the run
directory's name), so that one export file holds the figures of all runs. Missing data is None.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from harness.report.collect import RunData
from harness.report.document import Table
from harness.run.summary import RunSummary

LATENCY_KEYS = ("p50", "p90", "p95", "p99", "max")


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay whole."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, dict) else {name: value})
    return out


def _table(name: str, title: str, columns: list[str], rows: list[dict[str, Any]], **kw: Any) -> Table:
    return Table(name, title, tuple(columns), tuple(rows), **kw)


# -- test conditions ------------------------------------------------------------------------------

CONDITION_COLUMNS = [
    "run",
    "model",
    "weights_kind",
    "weights_sha256",
    "pipeline",
    "scheduler",
    "steps",
    "guidance_scale",
    "resolution",
    "latents_mode",
    "latents_seed",
    "latents_file_sha256",
    "batch_size",
    "max_batch_size",
    "max_wait_ms",
    "workers",
    "backend",
    "backend_options",
    "dtype",
    "device",
    "gpus",
    "cuda",
    "driver",
    "cpu",
    "hostname",
    "python",
    "libraries",
    "environment",
    "loadgen_version",
    "git_commit",
    "git_dirty",
    "prompt_pack",
    "prompts_source",
    "prompts_sha256",
    "prompts_count",
]


def conditions(runs: list[RunData]) -> Table:
    rows = []
    for r in runs:
        cfg, man = r.config, r.manifest
        model, backend, host = cfg.get("model", {}), man.get("backend", {}), man.get("host", {})
        weights = _get(man, "model", "weights")
        libs = man.get("libraries") or {}
        rows.append(
            {
                "run": r.label,
                "model": model.get("name") or r.summary.model,
                "weights_kind": _get(man, "model", "weights_source", "kind") or model.get("weights"),
                "weights_sha256": weights.get("sha256") if isinstance(weights, dict) else weights,
                "pipeline": model.get("pipeline"),
                "scheduler": (model.get("scheduler") or "(pipeline default)") if model else None,
                "steps": model.get("steps"),
                "guidance_scale": model.get("guidance_scale"),
                "resolution": f"{model['width']}x{model['height']}" if "width" in model and "height" in model else None,
                "latents_mode": _get(man, "latents", "mode"),
                "latents_seed": _get(man, "latents", "seed"),
                "latents_file_sha256": _get(man, "latents", "file_sha256") or None,
                "batch_size": _get(cfg, "sut", "batch_size"),
                "max_batch_size": _get(cfg, "sut", "max_batch_size"),
                "max_wait_ms": _get(cfg, "sut", "max_wait_ms"),
                "workers": _get(cfg, "workers", "count"),
                "backend": backend.get("backend") or r.summary.backend,
                "backend_options": json.dumps(cfg.get("backend") or {}, sort_keys=True),
                "dtype": backend.get("dtype"),
                "device": backend.get("device"),
                "gpus": ", ".join(map(str, host.get("gpus") or [])) or None,
                "cuda": host.get("cuda"),
                "driver": host.get("driver"),
                "cpu": host.get("cpu"),
                "hostname": host.get("hostname"),
                "python": host.get("python"),
                "libraries": ", ".join(f"{k} {v}" for k, v in libs.items() if v) or None,
                "environment": " ".join(f"{k}={v}" for k, v in (man.get("environment") or {}).items()) or None,
                "loadgen_version": _get(man, "loadgen", "version"),
                "git_commit": _get(man, "git", "commit"),
                "git_dirty": _get(man, "git", "dirty"),
                "prompt_pack": _get(man, "prompts", "name"),
                "prompts_source": _get(man, "prompts", "source"),
                "prompts_sha256": _get(man, "prompts", "sha256"),
                "prompts_count": _get(man, "prompts", "count"),
            }
        )
    return _table("conditions", "Test conditions", CONDITION_COLUMNS, rows, transpose=True)


# -- results --------------------------------------------------------------------------------------

RESULT_COLUMNS = [
    "run",
    "scenario",
    "mode",
    "backend",
    "status",
    "samples_per_second",
    "result_valid",
    "loadgen_validity",
    "invalid_reason",
    *[f"latency_{k}_ms" for k in LATENCY_KEYS],
    "first_image_cold_s",
    "first_image_warm_s",
    "peak_cpu_rss_mib",
    "peak_cuda_allocated_mib",
    "samples_completed",
]


def results(runs: list[RunData]) -> Table:
    rows = []
    for r in runs:
        s = r.summary
        latency = s.latency_ms
        row = {
            "run": r.label,
            "scenario": s.scenario,
            "mode": s.mode,
            "backend": s.backend,
            "status": s.status,
            "samples_per_second": s.samples_per_second,
            "result_valid": s.result_valid,
            "loadgen_validity": s.loadgen.result_validity,
            "invalid_reason": s.loadgen.invalid_reason or None,
            # time to first image as figures, not its JSON: cold from process start, warm on the loaded process
            "first_image_cold_s": _first_image(s, "cold"),
            "first_image_warm_s": _first_image(s, "warm"),
            "peak_cpu_rss_mib": s.peak_memory.get("cpu_rss_mib"),
            "peak_cuda_allocated_mib": s.peak_memory.get("cuda_allocated_mib"),
            "samples_completed": s.samples_completed,
        }
        row.update({f"latency_{k}_ms": latency.get(k) for k in LATENCY_KEYS})
        rows.append(row)
    return _table(
        "results",
        "Results",
        RESULT_COLUMNS,
        rows,
        note="samples/s and latency as LoadGen measured them, with LoadGen's verdict (INVALID: not a result; "
        "invalid_reason says why); time to first image in s, cold from process start, warm on the loaded "
        "process; peak memory over the whole process.",
    )


def _first_image(summary: RunSummary, key: str) -> float | None:
    """One figure of summary.time_to_first_image_s ({"cold": s, "warm": s, ...}; a bare number in old runs)."""
    value: Any = summary.time_to_first_image_s
    if isinstance(value, dict):
        figure = value.get(key)
        return float(figure) if isinstance(figure, (int, float)) else None
    return float(value) if key == "cold" and isinstance(value, (int, float)) else None


QUEUEING_COLUMNS = [
    "run",
    "queue_delay_p50_ms",
    "queue_delay_p99_ms",
    "queue_delay_max_ms",
    "batch_time_p50_ms",
    "batch_time_p99_ms",
    "batch_time_max_ms",
    "queue_share_p50",
    "backend_busy_s",
    "outside_backend_share",
]


def queueing(runs: list[RunData]) -> Table:
    rows = []
    for r in runs:
        queue = r.summary.harness.queue_delay_ms or {}
        batch = r.summary.harness.batch_time_ms or {}
        q50, b50 = queue.get("p50"), batch.get("p50")
        row: dict[str, Any] = {"run": r.label}
        for key in ("p50", "p99", "max"):
            row[f"queue_delay_{key}_ms"] = queue.get(key)
            row[f"batch_time_{key}_ms"] = batch.get(key)
        row["queue_share_p50"] = round(q50 / (q50 + b50), 4) if q50 is not None and b50 else None
        row["backend_busy_s"] = r.summary.timing.get("backend_busy_s")
        row["outside_backend_share"] = r.summary.timing.get("outside_backend_share")
        rows.append(row)
    return _table(
        "queueing",
        "Queueing delay against generation time",
        QUEUEING_COLUMNS,
        rows,
        note="queue delay: a sample's wait in the SUT queue before its batch started; batch time: the backend's "
        "generate call; queue_share_p50 = queue p50 / (queue p50 + batch p50).",
    )


STAGE_COLUMNS = ["run", "stage", "total_ms", "mean_ms", "p50_ms", "p99_ms", "share"]
STEP_COLUMNS = ["run", "count", "total_ms", "mean_ms", "p50_ms", "p99_ms"]


def stages(runs: list[RunData]) -> Table:
    rows = []
    for r in runs:
        per_stage = r.summary.timing.get("stages") or {}
        total = sum((v or {}).get("total_ms") or 0.0 for v in per_stage.values())
        for name, v in per_stage.items():
            t = v.get("total_ms")
            row = {"run": r.label, "stage": name, **{c: v.get(c) for c in STAGE_COLUMNS[2:6]}}
            row["share"] = round(t / total, 4) if t is not None and total else None
            rows.append(row)
    return _table("stages", "Where the time goes: stages", STAGE_COLUMNS, rows)


def steps(runs: list[RunData]) -> Table:
    rows = []
    for r in runs:
        v = r.summary.timing.get("steps")
        if isinstance(v, dict) and v.get("count"):
            rows.append({"run": r.label, **{c: v.get(c) for c in STEP_COLUMNS[1:]}})
    return _table("steps", "Denoising steps", STEP_COLUMNS, rows)


# -- quality --------------------------------------------------------------------------------------

ACCURACY_COLUMNS = ["run", "clip_score", "fid_score", "count", "verdict", "standin"]
CATEGORY_COLUMNS = ["run", "category", "clip_score", "count"]
KEY_VALUE_COLUMNS = ["run", "metric", "value"]


def accuracy(runs: list[RunData]) -> Table:
    rows = []
    for r in runs:
        a = r.accuracy
        if a:
            rows.append(
                {
                    "run": r.label,
                    "clip_score": a.get("CLIP_SCORE", a.get("clip_score")),
                    "fid_score": a.get("FID_SCORE", a.get("fid_score")),
                    "count": a.get("count"),
                    "verdict": a.get("verdict"),
                    "standin": a.get("standin"),
                }
            )
    return _table("accuracy", "Accuracy (CLIP score, FID)", ACCURACY_COLUMNS, rows)


def by_category(runs: list[RunData]) -> Table:
    rows = []
    for r in runs:
        cats = r.accuracy.get("by_category") or (r.summary.accuracy or {}).get("by_category") or {}
        for name, v in sorted(cats.items()):
            v = v if isinstance(v, dict) else {"clip_score": v}
            rows.append({"run": r.label, "category": name, "clip_score": v.get("clip_score"), "count": v.get("count")})
    return _table("quality_by_category", "Quality by prompt category", CATEGORY_COLUMNS, rows)


LPIPS_COLUMNS = ["run", "category", "prompt", "lpips_diversity", "pairs", "seeds"]


def lpips_by_category(runs: list[RunData], name: str = "lpips_diversity") -> Table:
    """LPIPS diversity per prompt (quality.diversity_seeds): the mean distance between the images of one
    prompt made with different seeds; higher = more varied. Each category's first prompt comes first."""
    rows = []
    for r in runs:
        lp = (r.summary.quality or {}).get("lpips_diversity") or {}
        for p in lp.get("per_prompt") or []:
            rows.append(
                {
                    "run": r.label,
                    "category": p.get("category"),
                    "prompt": p.get("prompt"),
                    "lpips_diversity": p.get("mean"),
                    "pairs": p.get("pairs"),
                    "seeds": lp.get("seeds"),
                }
            )
        if lp.get("per_prompt"):
            rows.append(
                {
                    "run": r.label,
                    "category": "(all)",
                    "prompt": "",
                    "lpips_diversity": lp.get("mean"),
                    "seeds": lp.get("seeds"),
                }
            )
    return _table(
        name,
        "LPIPS diversity (same prompt, different seeds)",
        LPIPS_COLUMNS,
        rows,
        note="mean pairwise LPIPS (AlexNet) between the images of one prompt made with different latent seeds.",
    )


def key_values(
    runs: list[RunData], part: Callable[[RunSummary], Mapping[str, Any] | None], name: str, title: str
) -> Table:
    """Whatever one part of the summary holds (cost, energy, quality), flattened to metric / value rows; a run
    whose record says it has no data ({"available": false, ...}, as energy without NVML) adds no rows."""
    rows = []
    for r in runs:
        record = part(r.summary)
        if isinstance(record, dict) and record.get("available") is False:
            continue
        for metric, value in flatten(record).items():
            rows.append({"run": r.label, "metric": metric, "value": value})
    return _table(name, title, KEY_VALUE_COLUMNS, rows)


# -- several runs side by side --------------------------------------------------------------------

COMPARISON_COLUMNS = ["metric", "run", "value", "baseline", "delta", "delta_pct"]


def _metrics(r: RunData) -> dict[str, Any]:
    s, a = r.summary, r.accuracy
    out = {
        "samples_per_second": s.samples_per_second,
        "latency_p50_ms": s.latency_ms.get("p50"),
        "latency_p99_ms": s.latency_ms.get("p99"),
        "first_image_cold_s": _first_image(s, "cold"),
        "first_image_warm_s": _first_image(s, "warm"),
        "peak_cpu_rss_mib": s.peak_memory.get("cpu_rss_mib"),
        "clip_score": a.get("CLIP_SCORE", a.get("clip_score")),
        "fid_score": a.get("FID_SCORE", a.get("fid_score")),
    }
    for stage, v in (s.timing.get("stages") or {}).items():
        out[f"stage_{stage}_total_ms"] = (v or {}).get("total_ms")
    return out


def comparison(runs: list[RunData]) -> Table:
    """Every later run against the first: value, baseline, delta and delta in percent."""
    base = _metrics(runs[0])
    names = list(base)
    for r in runs[1:]:
        names += [k for k in _metrics(r) if k not in names]
    rows = []
    for metric in names:
        b = base.get(metric)
        for r in runs[1:]:
            v = _metrics(r).get(metric)
            if v is None and b is None:
                continue
            delta = v - b if isinstance(v, (int, float)) and isinstance(b, (int, float)) else None
            pct = round(100.0 * delta / b, 2) if delta is not None and b else None
            rows.append({"metric": metric, "run": r.label, "value": v, "baseline": b, "delta": delta, "delta_pct": pct})
    return _table(
        "comparison",
        f"Comparison with the first run ({runs[0].label})",
        COMPARISON_COLUMNS,
        rows,
        note="delta = value - baseline; delta_pct = 100 x delta / baseline. Higher samples/s and CLIP score are "
        "better; lower latency, stage times and FID are better.",
    )
