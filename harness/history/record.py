"""A run directory -> one `runs` row, its per-sample latencies and its quality by category; recorded
once (the run id is the directory name and a hash of its manifest.json, so importing again is a no-op).

    record_run_dir(engine, run_dir)          # -> RecordOutcome(run_id, added)
    record_finished_run(cfg, run_dir)        # what commands/run.py calls: honours [history], warns on failure
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from harness.config import RunConfig
from harness.history.db import HistoryError, _now, history_url, open_history, shown
from harness.history.schema import quality_by_category, runs, sample_latencies
from harness.run.summary import RunSummary

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

_STAMP = "%Y%m%d-%H%M%S"


@dataclass(frozen=True)
class RecordOutcome:
    run_id: str
    added: bool  # False: it was recorded before


@dataclass(frozen=True)
class RunRows:
    run: dict[str, Any]
    latencies: list[dict[str, Any]]
    quality: list[dict[str, Any]]


def run_id_of(run_dir: Path) -> str:
    """<directory name>-<first 8 hex of sha256(manifest.json)> (of summary.json when there is no manifest)."""
    for name in ("manifest.json", "summary.json"):
        path = run_dir / name
        if path.is_file():
            return f"{run_dir.name}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"
    raise HistoryError(f"{run_dir} is not a run directory (no manifest.json or summary.json)")


def record_finished_run(cfg: RunConfig, run_dir: Path) -> RecordOutcome | None:
    """Record a run that just ended. History is a side line: any failure is a warning, never the run's."""
    if not cfg.history.enabled:
        return None
    url = history_url(cfg.history.url, cfg.run.output_dir)
    try:
        engine = open_history(url)
        try:
            outcome = record_run_dir(engine, run_dir)
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - the run is done and written; history must not fail it
        log.warning("history: this run was not recorded in %s: %s", shown(url), exc)
        return None
    log.info("history: recorded as %s in %s", outcome.run_id, shown(url))
    return outcome


def record_run_dir(engine: Engine, run_dir: Path) -> RecordOutcome:
    rows = read_run_dir(run_dir)
    run_id = rows.run["run_id"]
    with engine.begin() as conn:
        if conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is not None:
            return RecordOutcome(run_id, False)
        try:
            with conn.begin_nested():
                conn.execute(runs.insert(), rows.run)
                if rows.latencies:
                    conn.execute(sample_latencies.insert(), rows.latencies)
                if rows.quality:
                    conn.execute(quality_by_category.insert(), rows.quality)
        except IntegrityError:  # another writer recorded the same run just now
            return RecordOutcome(run_id, False)
    return RecordOutcome(run_id, True)


def read_run_dir(run_dir: Path) -> RunRows:
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise HistoryError(f"{run_dir}: no summary.json (not a finished run)")
    try:
        summary_raw = json.loads(summary_path.read_text(encoding="utf-8"))
        summary = RunSummary.from_json(summary_raw)
    except (ValueError, TypeError) as exc:
        raise HistoryError(f"{summary_path}: not a readable summary ({exc})") from exc
    manifest = _read_json(run_dir / "manifest.json")
    config = _read_toml(run_dir / "config.toml")
    run_id = run_id_of(run_dir)
    row: dict[str, Any] = {
        "run_id": run_id,
        "run_dir": str(run_dir.resolve()),
        "started_at": _started_at(run_dir),
        "recorded_at": _now(),
        "status": summary.status or None,
        **conditions(summary, manifest, config),
        **results(summary, _read_json(run_dir / "accuracy.json")),
        "summary": json.dumps(summary_raw, sort_keys=True),
    }
    latencies = [
        {"run_id": run_id, "seq": i, "sample_index": idx, "latency_ms": ms}
        for i, (idx, ms) in enumerate(read_sample_latencies(run_dir / "sample_latencies.csv"))
    ]
    return RunRows(row, latencies, _quality_rows(run_id, summary))


def read_sample_latencies(path: Path) -> list[tuple[int, float]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [(int(r["sample_index"]), float(r["latency_ms"])) for r in csv.DictReader(f)]


def conditions(summary: RunSummary, manifest: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    model_cfg = config.get("model", {})
    sut = config.get("sut", {})
    host = manifest.get("host", {})
    model_m = manifest.get("model", {})
    backend_m = manifest.get("backend", {})
    weights_source = model_m.get("weights_source") or {}
    # the backend's resolved options (defaults filled in), else the configured ones
    options = backend_m.get("options") if "options" in backend_m else config.get("backend", {})
    gpus = list(host.get("gpus") or [])
    loadgen = config.get("loadgen_resolved") or {
        "loadgen": config.get("loadgen", {}),
        "overrides": config.get("loadgen_overrides", {}),
    }
    audit = config.get("run", {}).get("audit_config", "")
    loadgen = {**loadgen, "user_conf": config.get("user_conf", ""), "audit_config": audit}
    workers = config.get("workers", {})
    return {
        "model": summary.model or model_cfg.get("name"),
        "weights_source": weights_source.get("kind") or summary.weights,
        "weights_sha256": (model_m.get("weights") or {}).get("sha256"),
        "backend": summary.backend or config.get("run", {}).get("backend"),
        "backend_options": _canonical(options or {}),
        "scenario": summary.scenario,
        "mode": summary.mode,
        "height": model_cfg.get("height"),
        "width": model_cfg.get("width"),
        "steps": model_cfg.get("steps"),
        "guidance_scale": model_cfg.get("guidance_scale"),
        "batch_size": sut.get("batch_size"),
        "max_batch_size": sut.get("max_batch_size"),
        "max_wait_ms": sut.get("max_wait_ms"),
        "workers": len(str(workers.get("devices", "")).split(",")) if workers.get("devices") else workers.get("count"),
        "dataset_sha256": (manifest.get("prompts") or {}).get("sha256"),
        "dataset_count": (config.get("dataset") or {}).get("count"),
        "latents_hash": _hash(manifest.get("latents") or config.get("latents") or {}),
        "loadgen_settings_hash": _hash(loadgen),
        "hardware": hardware_label(host),
        "gpu_name": gpus[0] if gpus else None,
        "gpu_count": len(gpus),
        "gpu_driver": host.get("driver"),
        "cpu": host.get("cpu"),
        "cpu_count": host.get("cpu_count"),
        "hostname": host.get("hostname"),
        "versions": _canonical(manifest.get("libraries") or {}),
        "harness_version": manifest.get("harness_version"),
        "git_commit": (manifest.get("git") or {}).get("commit"),
        "git_dirty": (manifest.get("git") or {}).get("dirty"),
    }


def hardware_label(host: Mapping[str, Any]) -> str:
    gpus = list(host.get("gpus") or [])
    if gpus:
        names = sorted(set(gpus))
        driver = f" (driver {host['driver']})" if host.get("driver") else ""
        return f"{len(gpus)} x {' + '.join(names)}{driver}"
    return f"{host.get('cpu') or 'unknown CPU'} x{host.get('cpu_count') or '?'} cores"


def results(summary: RunSummary, accuracy_json: Mapping[str, Any]) -> dict[str, Any]:
    lat = summary.latency_ms
    ttfi = summary.time_to_first_image_s or {}
    acc = summary.accuracy or {}
    energy = summary.energy or {}
    cost = summary.cost or {}
    diversity = (summary.quality or {}).get("lpips_diversity") or {}
    stages = (summary.timing or {}).get("stages") or {}
    verdict = summary.verdict()
    return {
        "result_validity": verdict.validity,
        "invalid_reason": verdict.reason or None,
        "valid_for_submission": summary.valid_for_submission,
        "samples_per_second": summary.samples_per_second,
        "latency_p50_ms": lat.get("p50"),
        "latency_p90_ms": lat.get("p90"),
        "latency_p95_ms": lat.get("p95"),
        "latency_p99_ms": lat.get("p99"),
        "latency_max_ms": lat.get("max"),
        "latency_mean_ms": lat.get("mean"),
        "samples_completed": summary.samples_completed,
        "ttfi_cold_s": _number(ttfi.get("cold")),
        "ttfi_warm_s": _number(ttfi.get("warm")),
        "peak_memory_mib": summary.peak_memory_mib(),
        "energy_j_per_image": _number(energy.get("joules_per_image")),
        "cost_usd_per_image": _number(cost.get("cost_per_image_usd")),
        "clip_score": _number(acc.get("CLIP_SCORE", accuracy_json.get("CLIP_SCORE"))),
        "fid_score": _number(acc.get("FID_SCORE", accuracy_json.get("FID_SCORE"))),
        "accuracy_verdict": acc.get("verdict"),
        "lpips_diversity": _number(diversity.get("mean")),
        "stage_times": _canonical({k: v.get("mean_ms") for k, v in stages.items() if isinstance(v, Mapping)}),
    }


def _quality_rows(run_id: str, summary: RunSummary) -> list[dict[str, Any]]:
    rows = []
    for category, value in ((summary.accuracy or {}).get("by_category") or {}).items():
        rows.append(
            {
                "run_id": run_id,
                "category": category,
                "metric": "clip_score",
                "value": _number(value.get("clip_score")),
                "count": value.get("count"),
            }
        )
    diversity = ((summary.quality or {}).get("lpips_diversity") or {}).get("by_category") or {}
    for category, value in diversity.items():
        rows.append(
            {
                "run_id": run_id,
                "category": category,
                "metric": "lpips_diversity",
                "value": _number(value),
                "count": None,
            }
        )
    return rows


def _started_at(run_dir: Path) -> dt.datetime:
    """The time in the directory's name (local time, as make_run_dir stamps it) in UTC, else the manifest's mtime."""
    stamp = "-".join(run_dir.name.split("-")[:2])
    try:
        local = dt.datetime.strptime(stamp, _STAMP).astimezone()
    except ValueError:
        path = run_dir / "manifest.json" if (run_dir / "manifest.json").exists() else run_dir / "summary.json"
        local = dt.datetime.fromtimestamp(path.stat().st_mtime).astimezone()
    return local.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise HistoryError(f"{path}: not valid JSON ({exc})") from exc
    return data if isinstance(data, dict) else {}


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise HistoryError(f"{path}: not valid TOML ({exc})") from exc


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _hash(value: Any) -> str:
    return hashlib.sha256(_canonical(value).encode()).hexdigest()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
