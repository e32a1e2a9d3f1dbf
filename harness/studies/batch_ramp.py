"""The batch-size ramp: Offline throughput at batch 1, 2, 4, 8, ... until it stops rising.

For one (resolution, steps) the ramp measures batch sizes in doubling steps up to `max_batch` (and
`max_batch` itself when it is not a power of two). It stops at the first batch size whose throughput
gains less than `min_gain` (0.03 = 3%) over the best so far, at the first run that runs out of memory
(status "oom": CUDA OOM or MemoryError) or fails otherwise, or at `max_batch`. The point with the
highest throughput is marked best.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# batch size -> {"images_per_second", "peak_memory_mib", "status", "error"} of one Offline run
MeasureFn = Callable[[int], dict[str, Any]]


def ramp_batch_sizes(max_batch: int) -> list[int]:
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    sizes = [1]
    while sizes[-1] * 2 <= max_batch:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch:
        sizes.append(max_batch)
    return sizes


def run_ramp(measure: MeasureFn, max_batch: int = 64, min_gain: float = 0.03) -> list[dict[str, Any]]:
    """The ramp's points in order, each {batch_size, images_per_second, peak_memory_mib, status, error, best}."""
    points: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for batch_size in ramp_batch_sizes(max_batch):
        m = measure(batch_size)
        point = {
            "batch_size": batch_size,
            "images_per_second": m.get("images_per_second"),
            "peak_memory_mib": m.get("peak_memory_mib"),
            "status": m["status"],
            "error": m.get("error"),
            "best": False,
        }
        points.append(point)
        ips = point["images_per_second"]
        if point["status"] != "ok" or not ips:
            break  # out of memory, or failed: larger batches would too
        if best is not None and ips < best["images_per_second"] * (1 + min_gain):
            if ips > best["images_per_second"]:
                best = point
            break  # throughput stopped rising
        best = point
    if best is not None:
        best["best"] = True
    return points
