"""Tables of sweep, scale and compare directories, from sweep.json, scale.json and compare.json.

As for runs, each builder takes every directory of its kind and puts the directory's name in `run`.
"""

from __future__ import annotations

from statistics import mean
from typing import Any

from harness.report.collect import DirData
from harness.report.document import Table
from harness.studies import rows as study_rows

# The producers' row types (harness/studies/rows.py) are the contract: the report shows their columns with
# `run` first and without the run_dir path.
# sweep.json's rows, in two tables of a readable width: speed and LoadGen's verdict; quality, cost and first image.
_SWEEP = study_rows.columns(study_rows.SweepRow)
_POINT = ["run", *_SWEEP[: _SWEEP.index("scenario") + 1]]  # resolution, steps, batch_size, scenario
SWEEP_SPEED_COLUMNS = [
    *_POINT,
    *_SWEEP[_SWEEP.index("seconds_per_image") : _SWEEP.index("peak_memory_mib") + 1],
    "loadgen_validity",
    "invalid_reason",
    "status",
]
SWEEP_COST_COLUMNS = [
    *_POINT,
    *_SWEEP[_SWEEP.index("clip_score") : _SWEEP.index("first_image_warm_s") + 1],
    "loadgen_validity",
]


def _shown(row_type: type) -> list[str]:
    return ["run", *(c for c in study_rows.columns(row_type) if c != "run_dir")]


SWEEP_QUALITY_COLUMNS = _shown(study_rows.QualityRow)
SWEEP_RAMP_COLUMNS = _shown(study_rows.RampRow)
SWEEP_FIT_COLUMNS = _shown(study_rows.FitRow)
SWEEP_STEPS_COLUMNS = ["run", "resolution", "steps", "clip_score", "seconds_per_image"]
SWEEP_CATEGORY_COLUMNS = _shown(study_rows.CategoryRow)
SCALE_COLUMNS = _shown(study_rows.ScaleRow)
COMPARE_COLUMNS = _shown(study_rows.CompareTableRow)


def _pick(d: DirData, key: str, columns: list[str]) -> list[dict[str, Any]]:
    return [{"run": d.label, **{c: row.get(c) for c in columns[1:]}} for row in d.data.get(key) or []]


def _table(name: str, title: str, columns: list[str], rows: list[dict[str, Any]], note: str = "") -> Table:
    return Table(name, title, tuple(columns), tuple(rows), note=note)


def _sweep_rows(sweeps: list[DirData], columns: list[str]) -> list[dict[str, Any]]:
    rows = [r for d in sweeps for r in _pick(d, "rows", columns)]
    rows.sort(key=lambda r: (r["run"], r["resolution"] or 0, r["steps"] or 0, r["batch_size"] or 0))
    return rows


def sweep_speed(sweeps: list[DirData]) -> Table:
    return _table(
        "sweep_speed",
        "Speed by resolution, steps and batch size",
        SWEEP_SPEED_COLUMNS,
        _sweep_rows(sweeps, SWEEP_SPEED_COLUMNS),
        note="seconds per image: SingleStream's mean latency (Offline has none: its latencies count from the "
        "one query's issue); p50 / p95 / p99 latency in ms; peak memory in MiB; loadgen_validity: LoadGen's "
        "verdict (an INVALID row is not a result; invalid_reason says why, early stopping's included).",
    )


def sweep_cost(sweeps: list[DirData]) -> Table:
    """Quality, cost and time to first image of each point; empty where the sweep has none of them."""
    rows = _sweep_rows(sweeps, SWEEP_COST_COLUMNS)
    if not any(r.get(c) is not None for r in rows for c in SWEEP_COST_COLUMNS[5:-1]):
        rows = []
    return _table(
        "sweep_cost",
        "Quality, cost and time to first image by point",
        SWEEP_COST_COLUMNS,
        rows,
        note="clip_score from the point's quality run; cost columns with a price (cost.gpu_hour_usd or "
        "cost.instance), per accepted image with cost.accept_clip_min; time to first image in s, cold from "
        "process start, warm on the loaded process.",
    )


def _sweep_list(sweeps: list[DirData], key: str, name: str, title: str, columns: list[str], note: str = "") -> Table:
    """One of sweep.json's lists (ramp, fit, quality, by_category) as a table, every sweep's rows in turn."""
    return _table(name, title, columns, [r for d in sweeps for r in _pick(d, key, columns)], note=note)


def sweep_ramp(sweeps: list[DirData]) -> Table:
    return _sweep_list(
        sweeps,
        "ramp",
        "sweep_ramp",
        "Batch ramp (best = highest images per second)",
        SWEEP_RAMP_COLUMNS,
        note="best: the batch size with the highest throughput at that resolution and step count.",
    )


def sweep_fit(sweeps: list[DirData]) -> Table:
    return _sweep_list(
        sweeps,
        "fit",
        "sweep_fit",
        "Largest batch that fits",
        SWEEP_FIT_COLUMNS,
        note="python -m harness fit: batch 1, 2, 4, ... until a call runs out of memory, then bisection, with "
        "probe_steps denoising steps per call; limited_by: memory (one more image ran out of memory), max_batch "
        "(every size up to --max-batch fitted) or error; peak memory in MiB at the largest batch (CUDA reserved, "
        "else the process's resident set), device memory where CUDA is used; memory_fraction: the share of it the "
        "search could use (memory_limit_mib; none without CUDA); full_run_batch: the batch a full Offline run "
        "ran at, full_run_oom: the fitted batches whose full run ran out of memory (the sweep stepped down).",
    )


def sweep_steps_quality(sweeps: list[DirData]) -> Table:
    """CLIP score per step count: the mean over the points that were scored, with their fastest time."""
    rows = []
    for d in sweeps:
        groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
        for row in d.data.get("rows") or []:
            groups.setdefault((row.get("resolution"), row.get("steps")), []).append(row)
        for (resolution, steps), points in sorted(groups.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1] or 0)):
            clips = [p["clip_score"] for p in points if p.get("clip_score") is not None]
            times = [p["seconds_per_image"] for p in points if p.get("seconds_per_image") is not None]
            rows.append(
                {
                    "run": d.label,
                    "resolution": resolution,
                    "steps": steps,
                    "clip_score": round(mean(clips), 6) if clips else None,
                    "seconds_per_image": min(times) if times else None,
                }
            )
    return _table(
        "sweep_steps_quality",
        "Steps against quality",
        SWEEP_STEPS_COLUMNS,
        rows,
        note="clip_score: mean over the batch sizes scored at that point; seconds_per_image: the fastest of them.",
    )


def sweep_quality(sweeps: list[DirData]) -> Table:
    return _sweep_list(
        sweeps,
        "quality",
        "sweep_quality",
        "Quality per resolution and steps",
        SWEEP_QUALITY_COLUMNS,
        note="one accuracy-mode run per point: CLIP and FID as the accuracy mode scores them; lpips_diversity: "
        "mean LPIPS between images of the same prompt with different seeds (quality.diversity_seeds); "
        "accepted_share: images whose CLIP score passes cost.accept_clip_min.",
    )


def sweep_by_category(sweeps: list[DirData]) -> Table:
    return _sweep_list(
        sweeps, "by_category", "sweep_quality_by_category", "Sweep quality by prompt category", SWEEP_CATEGORY_COLUMNS
    )


def scale(dirs: list[DirData]) -> Table:
    rows = [r for d in dirs for r in _pick(d, "rows", SCALE_COLUMNS)]
    return _table(
        "scale",
        "Scaling with the worker count",
        SCALE_COLUMNS,
        rows,
        note="speedup = throughput(N) / throughput(first count); efficiency = speedup / N (Offline only).",
    )


COMPARE_STAGE_COLUMNS = ["run", "backend", "stage", "mean_ms", "p50_ms", "p99_ms", "total_ms"]


def compare_stages(dirs: list[DirData]) -> Table:
    """Where each backend's time went (summary `timing` of its performance run): which part got faster."""
    rows = []
    for d in dirs:
        for r in d.data.get("results") or []:
            timing = r.get("timing") or {}
            named = [*(timing.get("stages") or {}).items(), ("denoising_step", timing.get("steps") or {})]
            for stage, v in named:
                if v.get("mean_ms") is None:
                    continue
                rows.append(
                    {"run": d.label, "backend": r.get("backend"), "stage": stage}
                    | {k: v.get(k) for k in ("mean_ms", "p50_ms", "p99_ms", "total_ms")}
                )
    return _table(
        "compare_stages",
        "Where each backend's time went",
        COMPARE_STAGE_COLUMNS,
        rows,
        note="per batch (per step for denoising_step), from each backend's stage timing (backend.stage_timing).",
    )


def compare(dirs: list[DirData]) -> Table:
    rows = [
        {"run": d.label, **study_rows.CompareTableRow.from_result(r).to_json()}
        for d in dirs
        for r in d.data.get("results") or []
    ]
    return _table(
        "compare",
        "Backends side by side",
        COMPARE_COLUMNS,
        rows,
        note="speedup over the compare's reference backend; parity: uint8 images against the reference's "
        "(largest and mean absolute difference, PSNR; an empty PSNR with a zero difference means identical).",
    )
