"""Cost per image from a price per device-hour and the measured throughput (config section [cost]).

    python -m harness --scenario Offline --set cost.gpu_hour_usd=2.5
    python -m harness --scenario Offline --set cost.instance=h100 --config prices.toml   # [cost.instances]

Throughput, by scenario:
- Offline: LoadGen's samples per second (the capacity at this batch size);
- Server: LoadGen's completed samples per second, the rate the run was offered, so the cost is the cost
  at that load, not at capacity;
- SingleStream: 1 / mean latency (LoadGen's result_mean_latency_ns), one image at a time.

The hourly price is per device: a run on N devices (workers.devices, or N Ray actors) pays N x price;
a pool of worker processes on one machine pays for one device.

Cost per accepted image: with a nonzero `cost.accept_clip_min`, an image is accepted when its own CLIP score
is at least that value, and cost per accepted image = cost per image / accepted share. Only per-image
CLIP scores decide it (accuracy.json "clip_scores", written by accuracy mode); a mean CLIP score says
nothing about the share, so without per-image scores the figure is None with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import CostSection, RunConfig


def hourly_price(cost: CostSection) -> tuple[float, str] | None:
    """(USD per device-hour, where the price came from), or None when no price is configured."""
    if cost.instance:
        return float(cost.instances[cost.instance]), f"cost.instances[{cost.instance!r}]"
    if cost.gpu_hour_usd > 0:
        return float(cost.gpu_hour_usd), "cost.gpu_hour_usd"
    return None


@dataclass(frozen=True)
class Throughput:
    """What a run's cost is computed from (the run's RunSummary fields of the same names)."""

    scenario: str
    samples_per_second: float | None  # LoadGen's figure for the scenario
    mean_latency_ms: float | None  # LoadGen's mean latency


def images_per_second(run: Throughput) -> tuple[float | None, str]:
    """The throughput the cost is computed from, and what it is (see the module docstring)."""
    if run.scenario == "SingleStream":
        if not run.mean_latency_ms:
            return None, "SingleStream: no mean latency"
        return 1e3 / run.mean_latency_ms, "SingleStream: 1 / mean latency"
    sps = run.samples_per_second
    return (float(sps) if sps else None), f"{run.scenario}: LoadGen samples per second"


def clip_scores_from(accuracy: dict[str, Any] | None) -> list[float] | None:
    """Per-image CLIP scores from accuracy.json ("clip_scores": a list, or sample index -> score), if any."""
    scores = (accuracy or {}).get("clip_scores")
    if isinstance(scores, dict):
        scores = list(scores.values())
    if not scores:
        return None
    return [float(s) for s in scores]


def cost_figures(
    cost: CostSection,
    run: Throughput,
    devices: int = 1,
    clip_scores: Sequence[float] | None = None,
) -> dict[str, Any] | None:
    """What goes into summary["cost"]; None when no price is configured."""
    price = hourly_price(cost)
    if price is None:
        return None
    usd_per_device_hour, source = price
    ips, throughput_from = images_per_second(run)
    out: dict[str, Any] = {
        "usd_per_device_hour": usd_per_device_hour,
        "devices": devices,
        "price_source": source,
        "images_per_second": round(ips, 6) if ips else None,
        "throughput_from": throughput_from,
        "cost_per_image_usd": None,
        "cost_per_1000_images_usd": None,
        "images_per_usd": None,
        "cost_per_accepted_image_usd": None,
    }
    if not ips:
        out["reason"] = "no throughput measured (the run failed, or accuracy mode)"
        return out
    per_image = usd_per_device_hour * devices / 3600.0 / ips
    out["cost_per_image_usd"] = per_image
    out["cost_per_1000_images_usd"] = round(per_image * 1000, 6)
    out["images_per_usd"] = round(1 / per_image, 3)
    if cost.accept_clip_min != 0:
        out["acceptance"] = acceptance(cost.accept_clip_min, clip_scores)
        share = out["acceptance"].get("accepted_share")
        out["cost_per_accepted_image_usd"] = per_image / share if share else None
    return out


def acceptance(clip_min: float, clip_scores: Sequence[float] | None) -> dict[str, Any]:
    rule = f"per-image CLIP score >= {clip_min}"
    if not clip_scores:
        return {
            "rule": rule,
            "accepted_share": None,
            "reason": "no per-image CLIP scores (accuracy.json clip_scores from an accuracy-mode run)",
        }
    accepted = sum(1 for s in clip_scores if s >= clip_min)
    share = accepted / len(clip_scores)
    return {"rule": rule, "accepted": accepted, "scored": len(clip_scores), "accepted_share": share}


def device_count(workers_devices: str, ray_address: str, workers_count: int) -> int:
    """Devices the run pays for: the workers.devices entries, else one per Ray actor, else one."""
    listed = [d for d in workers_devices.split(",") if d.strip()]
    if listed:
        return len(listed)
    return workers_count if ray_address else 1


def for_run(cfg: RunConfig, run: Throughput, run_dir: Path) -> dict[str, Any] | None:
    """The summary's cost for one run: its throughput, and its per-image CLIP scores where accuracy mode
    wrote them."""
    accuracy_json = run_dir / "accuracy.json"
    accuracy = json.loads(accuracy_json.read_text()) if accuracy_json.is_file() else None
    w = cfg.workers
    return cost_figures(cfg.cost, run, device_count(w.devices, w.ray_address, w.count), clip_scores_from(accuracy))
