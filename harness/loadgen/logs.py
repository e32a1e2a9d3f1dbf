"""Reads what LoadGen wrote: the `:::MLLOG` JSON lines of mlperf_log_detail.txt."""

from __future__ import annotations

import json
import re
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


@dataclass(frozen=True)
class Verdict:
    """LoadGen's verdict on a performance run: VALID, INVALID, or None where it wrote none (a run that
    failed, or an accuracy run); `reason` says why it is not VALID ("" when it is)."""

    validity: str | None
    reason: str

    @property
    def valid(self) -> bool:
        return self.validity == "VALID"

    @classmethod
    def of(cls, validity: str | None, invalid_reason: str | None, have_summary: bool = True) -> Verdict:
        """The verdict from what a run recorded: LoadGen's validity and its reason."""
        reason = "" if validity == "VALID" else str(invalid_reason or "").strip()
        if validity is None and not reason:
            reason = "no LoadGen result" if have_summary else "no summary.json"
        return cls(validity, reason)

    @classmethod
    def from_summary(cls, summary: dict[str, Any] | None) -> Verdict:
        """The verdict a summary.json dict recorded (its `loadgen` block); RunSummary.verdict() for the record."""
        loadgen = (summary or {}).get("loadgen") or {}
        return cls.of(loadgen.get("result_validity"), loadgen.get("invalid_reason"), bool(summary))

    def label(self) -> str:
        """For a terminal line or a table cell: VALID, or INVALID (reason)."""
        if self.valid:
            return "VALID"
        return f"{self.validity or 'no result'} ({self.reason})" if self.reason else str(self.validity or "no result")


def _squash(text: str) -> str:
    """LoadGen's multi-line recommendations as one line (it replaces newlines by spaces, leaving runs)."""
    return re.sub(r"\s+", " ", text.replace("*", " ")).strip(" ;")


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

    def verdict(self) -> Verdict:
        """LoadGen's verdict and every reason it gave. LoadGen leaves `result_invalid_reason` empty when only
        early stopping failed: the reason is then in `early_stopping_result` ("Would need to run at least N
        more queries", "Need to process at least 64 queries"), which is where this looks too."""
        validity = self.values.get("result_validity")
        if validity is None:
            return Verdict(None, "no LoadGen result in mlperf_log_detail.txt (the run stopped before LoadGen ended)")
        if validity == "VALID":
            return Verdict("VALID", "")
        reasons = [_squash(str(self.values.get("result_invalid_reason") or ""))]
        if self.values.get("result_min_queries_met") is False and "exited early" not in reasons[0]:
            reasons.append("min query count not met")
        if self.values.get("early_stopping_met") is False:
            reasons.append(f"early stopping not met: {_squash(str(self.values.get('early_stopping_result') or ''))}")
        return Verdict(str(validity), "; ".join(r for r in reasons if r) or "LoadGen gave no reason")


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
