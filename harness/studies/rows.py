"""The columns of the studies' rows: sweep.json (rows, quality, ramp, fit) and scale.json (rows).

The producers (harness/commands/sweep.py, scale.py) and the report (harness/report/dir_tables.py) both
read them here, so the report never imports a command.
"""

from __future__ import annotations

ROW_COLUMNS = [
    "resolution",
    "steps",
    "batch_size",
    "scenario",
    "seconds_per_image",
    "images_per_second",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "peak_memory_mib",
    "clip_score",
    "cost_per_image_usd",
    "images_per_usd",
    "cost_per_accepted_image_usd",
    "first_image_cold_s",
    "first_image_warm_s",
    "loadgen_validity",
    "invalid_reason",
    "status",
    "error",
    "run_dir",
]

QUALITY_COLUMNS = [
    "resolution",
    "steps",
    "clip_score",
    "fid_score",
    "lpips_diversity",
    "accepted_share",
    "standin",
    "status",
    "error",
    "run_dir",
]

RAMP_COLUMNS = [
    "resolution",
    "steps",
    "batch_size",
    "images_per_second",
    "peak_memory_mib",
    "loadgen_validity",
    "invalid_reason",
    "status",
    "error",
    "best",
]

FIT_COLUMNS = [
    "resolution",
    "steps",
    "largest_batch",
    "limited_by",
    "peak_memory_mib",
    "device_memory_mib",
    "probe_steps",
    "probes",
    "memory_fraction",
    "memory_limit_mib",
    "full_run_batch",
    "full_run_oom",
    "status",
    "error",
    "run_dir",
]

SCALE_COLUMNS = [
    "scenario",
    "workers",
    "samples_per_second",
    "speedup",
    "efficiency",
    "latency_p50_ms",
    "latency_p99_ms",
    "result_valid",
    "loadgen_validity",
    "invalid_reason",
    "status",
    "run_dir",
]
