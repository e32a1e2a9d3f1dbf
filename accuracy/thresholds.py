"""Accuracy windows and the verdict.

Two kinds of window, both two-sided and inclusive (the MLPerf checker fails a score below the target
or above the upper limit):
- absolute, from the model config: for SDXL the MLPerf window
  31.68631873 <= CLIP_SCORE <= 31.81331801 and 23.01085758 <= FID_SCORE <= 23.95007626;
- relative to a reference run (`accuracy.reference = RUN_DIR`, for example the eager run of the same
  model, prompts and latents): each score within a percentage of the reference run's score. The
  defaults, CLIP 1 % and FID 2 %, are MLPerf's TEST01 tolerances for SDXL.

Verdict: PASS when every window holds and nothing else is wrong, FAIL otherwise (the process exits 3),
UNCHECKED when no window applies (a run that can serve as a reference).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from accuracy.errors import AccuracyError

CLIP_SCORE = "CLIP_SCORE"
FID_SCORE = "FID_SCORE"
METRICS = (CLIP_SCORE, FID_SCORE)
PASS, FAIL, UNCHECKED = "PASS", "FAIL", "UNCHECKED"


@dataclass(frozen=True)
class Window:
    metric: str
    low: float
    high: float
    source: str  # where the window comes from, for the report

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        return f"{self.low:.8f} <= {self.metric} <= {self.high:.8f} ({self.source})"


def absolute_windows(
    clip_min: float, clip_max: float, fid_min: float, fid_max: float, source: str = "model config"
) -> list[Window]:
    """One window per metric whose bounds are not both 0 (min 0 and max 0: no window for it)."""
    windows = []
    for metric, low, high in ((CLIP_SCORE, clip_min, clip_max), (FID_SCORE, fid_min, fid_max)):
        if high == 0 and low == 0:
            continue
        if low > high:
            raise AccuracyError(
                f"the {metric} window {low} .. {high} is empty; need min <= max "
                f"(model.clip_score_min/max, model.fid_min/max; both 0: no {metric} window)"
            )
        windows.append(Window(metric, float(low), float(high), source))
    return windows


def relative_windows(
    reference: Mapping[str, float], clip_tolerance_pct: float, fid_tolerance_pct: float, source: str
) -> list[Window]:
    """reference score +- tolerance % of it, for each metric."""
    windows = []
    for metric, pct in ((CLIP_SCORE, clip_tolerance_pct), (FID_SCORE, fid_tolerance_pct)):
        if pct < 0:
            key = metric.split("_")[0].lower()
            raise AccuracyError(f"accuracy.{key}_tolerance_pct must be >= 0, got {pct}")
        ref = float(reference[metric])
        margin = abs(ref) * pct / 100
        windows.append(Window(metric, ref - margin, ref + margin, f"{source}: {ref:.8f} +- {pct:g}%"))
    return windows


@dataclass
class Verdict:
    status: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why it failed, one line each

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(scores: Mapping[str, float], windows: Iterable[Window], problems: Iterable[str] = ()) -> Verdict:
    checks, reasons = [], list(problems)
    for w in windows:
        value = float(scores[w.metric])
        ok = w.contains(value)
        checks.append({**asdict(w), "value": value, "passed": ok})
        if not ok:
            reasons.append(f"{w.metric} {value:.8f} is outside {w.describe()}")
    if reasons:
        return Verdict(FAIL, checks, reasons)
    return Verdict(PASS if checks else UNCHECKED, checks, reasons)
