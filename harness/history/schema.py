"""The history's tables (SQLAlchemy Core). A change to them is a new entry in db.MIGRATIONS and a bump of
SCHEMA_VERSION; `schema_version` records every version a database has been migrated to.

One row per run in `runs`: what identifies its conditions (the columns named in CONDITIONS must match for
`gate` to compare two runs) and its results, with LoadGen's verdict on every row. The per-sample
latencies (sample_latencies.csv) go to `sample_latencies`, quality by prompt category to
`quality_by_category`.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 1

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(300), primary_key=True),  # <run directory name>-<sha256 of manifest.json, 8 hex>
    Column("run_dir", Text, nullable=False),
    Column("started_at", DateTime, nullable=False, index=True),  # UTC
    Column("recorded_at", DateTime, nullable=False),
    Column("status", String(32)),
    # -- conditions ------------------------------------------------------------------------------------
    Column("model", String(200), index=True),
    Column("weights_source", String(200)),
    Column("weights_sha256", String(64)),
    Column("backend", String(100), index=True),
    Column("backend_options", Text),  # canonical JSON of the backend's options as configured
    Column("scenario", String(32), index=True),
    Column("mode", String(32)),
    Column("height", Integer),
    Column("width", Integer),
    Column("steps", Integer),
    Column("guidance_scale", Float),
    Column("batch_size", Integer),
    Column("max_batch_size", Integer),
    Column("max_wait_ms", Float),
    Column("workers", Integer),
    Column("dataset_sha256", String(64)),
    Column("dataset_count", Integer),
    Column("latents_hash", String(64)),
    Column("loadgen_settings_hash", String(64)),
    Column("hardware", String(500), index=True),  # "<cpu> x<cores>" or "<n> x <gpu> (driver ...)"
    Column("gpu_name", String(200)),
    Column("gpu_count", Integer),
    Column("gpu_driver", String(100)),
    Column("cpu", String(200)),
    Column("cpu_count", Integer),
    Column("hostname", String(200)),
    Column("versions", Text),  # JSON: library versions
    Column("harness_version", String(50)),
    Column("git_commit", String(64), index=True),
    Column("git_dirty", Boolean),
    # -- results ---------------------------------------------------------------------------------------
    Column("result_validity", String(32)),  # LoadGen's verdict: VALID, INVALID, or NULL (no result)
    Column("invalid_reason", Text),
    Column("valid_for_submission", Boolean),
    Column("samples_per_second", Float),
    Column("latency_p50_ms", Float),
    Column("latency_p90_ms", Float),
    Column("latency_p95_ms", Float),
    Column("latency_p99_ms", Float),
    Column("latency_max_ms", Float),
    Column("latency_mean_ms", Float),
    Column("samples_completed", Integer),
    Column("ttfi_cold_s", Float),
    Column("ttfi_warm_s", Float),
    Column("peak_memory_mib", Float),
    Column("energy_j_per_image", Float),
    Column("cost_usd_per_image", Float),
    Column("clip_score", Float),
    Column("fid_score", Float),
    Column("accuracy_verdict", String(32)),
    Column("lpips_diversity", Float),
    Column("stage_times", Text),  # JSON: stage -> mean_ms
    Column("summary", Text),  # the whole summary.json, for later migrations
)

sample_latencies = Table(
    "sample_latencies",
    metadata,
    Column("run_id", String(300), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),  # order in sample_latencies.csv
    Column("sample_index", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
)

quality_by_category = Table(
    "quality_by_category",
    metadata,
    Column("run_id", String(300), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("category", String(200), primary_key=True),
    Column("metric", String(50), primary_key=True),  # clip_score, lpips_diversity
    Column("value", Float),
    Column("count", Integer),
)

# The conditions two runs must share for `gate` to compare them (stats of one say nothing about the other
# otherwise). Versions and the git commit are not among them: they are what a gate is there to test.
CONDITIONS = (
    "model",
    "weights_source",
    "weights_sha256",
    "backend",
    "backend_options",
    "scenario",
    "mode",
    "height",
    "width",
    "steps",
    "guidance_scale",
    "batch_size",
    "max_batch_size",
    "max_wait_ms",
    "workers",
    "dataset_sha256",
    "dataset_count",
    "latents_hash",
    "loadgen_settings_hash",
    "hardware",
)

# Headline metrics: (column, label, higher is better)
HEADLINE = (
    ("samples_per_second", "samples/s", True),
    ("latency_p50_ms", "p50 latency ms", False),
    ("latency_p90_ms", "p90 latency ms", False),
    ("latency_p99_ms", "p99 latency ms", False),
    ("ttfi_cold_s", "TTFI cold s", False),
    ("peak_memory_mib", "peak memory MiB", False),
    ("clip_score", "CLIP score", True),
    ("fid_score", "FID", False),
)
