"""The studies' row types: sweep.json (rows, quality, ramp, fit, by_category), scale.json (rows) and
compare.json (results). Each type's field order is its column order (CSV and report).

The producers (harness/commands/sweep.py, scale.py, compare.py with harness/studies/compare.py) build
them, and the report (harness/report/dir_tables.py) takes its columns from them, so the report never
imports a command. The JSON files hold each row as a dict, `to_json()`, key for key in field order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


def columns(row_type: type) -> list[str]:
    """A row type's columns, in order."""
    return [f.name for f in dataclasses.fields(row_type)]


class _Row:
    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class SweepRow(_Row):
    """One point of a sweep: resolution x steps x scenario x batch size, from its run's summary.json."""

    resolution: int
    steps: int
    batch_size: int
    scenario: str
    seconds_per_image: float | None = None  # SingleStream and Server: mean latency; Offline: none
    images_per_second: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    peak_memory_mib: float | None = None
    clip_score: float | None = None  # from the point's quality run
    cost_per_image_usd: float | None = None  # with cost.gpu_hour_usd or cost.instance
    images_per_usd: float | None = None
    cost_per_accepted_image_usd: float | None = None  # with the quality run's per-image CLIP
    first_image_cold_s: float | None = None
    first_image_warm_s: float | None = None
    loadgen_validity: str | None = None
    invalid_reason: str | None = None
    status: str = "ok"
    error: str | None = None
    run_dir: str = ""


@dataclass(frozen=True)
class QualityRow(_Row):
    """One accuracy-mode run of a sweep point: CLIP, FID, LPIPS diversity."""

    resolution: int
    steps: int
    clip_score: float | None = None
    fid_score: float | None = None
    lpips_diversity: float | None = None  # with quality.diversity_seeds > 0
    accepted_share: float | None = None  # with a nonzero cost.accept_clip_min
    standin: bool | None = None  # scored with stand-in scorer files: meaningless absolute numbers
    status: str = "ok"
    error: str | None = None
    run_dir: str = ""


@dataclass(frozen=True)
class CategoryRow(_Row):
    """A quality run's CLIP score for one prompt category."""

    resolution: int
    steps: int
    category: str
    clip_score: float | None = None
    count: int | None = None


@dataclass(frozen=True)
class RampRow(_Row):
    """One batch size of the Offline batch ramp."""

    resolution: int
    steps: int
    batch_size: int
    images_per_second: float | None = None
    peak_memory_mib: float | None = None
    loadgen_validity: str | None = None
    invalid_reason: str | None = None
    status: str = "ok"
    error: str | None = None
    best: bool = False


@dataclass(frozen=True)
class FitRow(_Row):
    """The largest batch that fits at one resolution and step count (`python -m harness fit`, then the full
    run the sweep made at it). Its columns only: the sweep keeps the entry as fit.json gave it."""

    resolution: int
    steps: int
    largest_batch: int = 0
    limited_by: str | None = None
    peak_memory_mib: float | None = None
    device_memory_mib: float | None = None
    probe_steps: int | None = None
    probes: int | None = None
    memory_fraction: float | None = None
    memory_limit_mib: float | None = None
    full_run_batch: int | None = None
    full_run_oom: str = ""
    status: str = "ok"
    error: str | None = None
    run_dir: str = ""


@dataclass(frozen=True)
class ScaleRow(_Row):
    """One worker count of `python -m harness scale`."""

    scenario: str
    workers: int
    samples_per_second: float | None = None
    speedup: float | None = None  # throughput(N) / throughput(first count), Offline only
    efficiency: float | None = None  # speedup / N, Offline only
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    result_valid: bool = False
    loadgen_validity: str | None = None
    invalid_reason: str | None = None
    status: str = "ok"
    run_dir: str = ""


@dataclass(frozen=True)
class CompareResult(_Row):
    """One backend in compare.json's `results`, as `make_row` writes it; compare adds `rounds`, the report
    `speedup` (both after these keys)."""

    backend: str
    status: str
    error: str | None
    run_dir: str | None
    accuracy_run_dir: str | None
    samples_per_second: float | None
    latency_ms: dict[str, float | None]  # p50, p90, p99
    loadgen_result: str | None
    invalid_reason: str | None  # LoadGen's reason for an INVALID result (early stopping's included)
    batch_sizes: Any
    setup_s: dict[str, float]  # compile, ONNX export, sessions, engine builds
    onnx_export_cached: bool | None
    phases_s: Any
    peak_memory: Any
    device: Any
    dtype: Any
    options: Any
    compile: Any
    prompts_sha256: str | None
    latents: Any
    timing: Any
    parity: dict[str, Any] | None = None
    parity_error: str | None = None


@dataclass(frozen=True)
class CompareTableRow(_Row):
    """The report's flat row of one compare.json result (the report puts the directory's name first)."""

    backend: str | None
    status: str | None
    samples_per_second: float | None
    speedup: float | None
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    peak_cpu_rss_mib: float | None
    peak_cuda_allocated_mib: float | None
    parity_max_abs_diff: float | None
    parity_mean_abs_diff: float | None
    parity_psnr_db: float | None
    loadgen_validity: str | None
    invalid_reason: str | None
    error: str | None

    @classmethod
    def from_result(cls, r: dict[str, Any]) -> CompareTableRow:
        latency, memory, parity = r.get("latency_ms") or {}, r.get("peak_memory") or {}, r.get("parity") or {}
        return cls(
            backend=r.get("backend"),
            status=r.get("status"),
            samples_per_second=r.get("samples_per_second"),
            speedup=r.get("speedup"),
            latency_p50_ms=latency.get("p50"),
            latency_p90_ms=latency.get("p90"),
            latency_p99_ms=latency.get("p99"),
            peak_cpu_rss_mib=memory.get("cpu_rss_mib"),
            peak_cuda_allocated_mib=memory.get("cuda_allocated_mib"),
            parity_max_abs_diff=parity.get("max_abs_diff"),
            parity_mean_abs_diff=parity.get("mean_abs_diff"),
            parity_psnr_db=parity.get("psnr_db"),
            loadgen_validity=r.get("loadgen_result"),
            invalid_reason=r.get("invalid_reason"),
            error=r.get("error"),
        )


# The column lists, for the CSV writers and older imports.
ROW_COLUMNS = columns(SweepRow)
QUALITY_COLUMNS = columns(QualityRow)
CATEGORY_COLUMNS = columns(CategoryRow)
RAMP_COLUMNS = columns(RampRow)
FIT_COLUMNS = columns(FitRow)
SCALE_COLUMNS = columns(ScaleRow)
COMPARE_TABLE_COLUMNS = columns(CompareTableRow)
