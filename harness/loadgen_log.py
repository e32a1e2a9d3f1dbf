"""Reads what LoadGen wrote: the `:::MLLOG` JSON lines of mlperf_log_detail.txt."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = ":::MLLOG "

# LoadGen's detail-log key for the scenario's throughput figure.
THROUGHPUT_KEY = {
    "Offline": "result_samples_per_second",
    "Server": "result_completed_samples_per_sec",
    "SingleStream": "result_qps_with_loadgen_overhead",
}

PERCENTILE_KEYS = {
    "p50": "result_50.00_percentile_latency_ns",
    "p90": "result_90.00_percentile_latency_ns",
    "p95": "result_95.00_percentile_latency_ns",
    "p99": "result_99.00_percentile_latency_ns",
    "max": "result_max_latency_ns",
    "min": "result_min_latency_ns",
    "mean": "result_mean_latency_ns",
}


@dataclass
class DetailLog:
    values: dict[str, Any] = field(default_factory=dict)  # key -> last value logged
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def result_valid(self) -> bool:
        return self.values.get("result_validity") == "VALID"

    def latency_ms(self) -> dict[str, float]:
        return {name: float(self.values[key]) / 1e6 for name, key in PERCENTILE_KEYS.items() if key in self.values}

    def samples_per_second(self, scenario: str) -> float | None:
        value = self.values.get(THROUGHPUT_KEY[scenario])
        return None if value is None else float(value)


def read_detail_log(path: str | Path) -> DetailLog:
    """Parse a detail log; a missing file gives an empty DetailLog (the run may have died early)."""
    out = DetailLog()
    p = Path(path)
    if not p.is_file():
        return out
    with p.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith(PREFIX):
                continue
            try:
                entry = json.loads(line[len(PREFIX) :])
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            key, value = entry.get("key"), entry.get("value")
            meta = entry.get("metadata") or {}
            if meta.get("is_error"):
                out.errors.append(f"{key}: {value}")
            elif meta.get("is_warning"):
                out.warnings.append(f"{key}: {value}")
            if key is not None:
                out.values[key] = value
    return out
