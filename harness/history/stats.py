"""Two runs (or pooled baselines) metric by metric: the delta, and whether it is more than noise.

Significance is judged on the per-sample latencies (sample_latencies.csv) with scipy, never by hand:
- a latency percentile (p50, p90, p99): a bootstrap 95% confidence interval (scipy.stats.bootstrap,
  percentile method, 2000 resamples, fixed seed) of the relative change of that percentile; significant
  when the interval leaves out 0. The p50 row also gives the Mann-Whitney U p-value
  (scipy.stats.mannwhitneyu, two-sided) of the two latency distributions.
- throughput: LoadGen's samples/s is one number per run. Offline issues every sample at once, so the
  evidence is the time between completions (one gap per returned batch; query.completion_gaps): the
  "typical throughput" row is completions per median gap, judged by the bootstrap CI of the median gap's
  change (the median: a load spike on a shared machine stretches a few batches, a slower backend all).
  SingleStream: the median latency (one sample at a time). Server: LoadGen sets the rate; not judged.
CLIP score and FID are one number per run (FID has no per-sample form): their delta is shown, not judged.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.history.query import RunSet, completion_gaps

CONFIDENCE = 0.95
RESAMPLES = 2000
MIN_SAMPLES = 5  # fewer per side: not judged
TYPICAL = "typical_throughput"  # the judged throughput row (not a column of `runs`)
BATCH_NOTE = "completions"  # Offline: a completion is a batch coming back


@dataclass(frozen=True)
class MetricDelta:
    metric: str  # column name in `runs`
    label: str
    a: float | None
    b: float | None
    higher_is_better: bool
    change: float | None = None  # relative, (b - a) / a
    ci: tuple[float, float] | None = None  # of the relative change
    p_value: float | None = None  # Mann-Whitney U, where computed
    significant: bool | None = None  # None: not judged (no per-sample evidence)
    note: str = ""

    @property
    def worse(self) -> bool:
        """The change goes the wrong way (by any amount)."""
        if self.change is None:
            return False
        return self.change < 0 if self.higher_is_better else self.change > 0

    def verdict(self) -> str:
        if self.significant is None:
            return "not judged"
        if not self.significant:
            return "noise"
        return "worse" if self.worse else "better"


def compare(a: RunSet, b: RunSet) -> list[MetricDelta]:
    scenario = a.first["scenario"]
    out = _throughput(a, b, scenario)
    for column, label, q in (
        ("latency_p50_ms", "p50 latency ms", 50.0),
        ("latency_p90_ms", "p90 latency ms", 90.0),
        ("latency_p99_ms", "p99 latency ms", 99.0),
    ):
        out.append(_percentile(a, b, column, label, q))
    for column, label, higher in (
        ("latency_mean_ms", "mean latency ms", False),
        ("ttfi_cold_s", "TTFI cold s", False),
        ("ttfi_warm_s", "TTFI warm s", False),
        ("peak_memory_mib", "peak memory MiB", False),
        ("energy_j_per_image", "energy J/image", False),
        ("cost_usd_per_image", "cost USD/image", False),
        ("clip_score", "CLIP score", True),
        ("fid_score", "FID", False),
        ("lpips_diversity", "LPIPS diversity", True),
    ):
        va, vb = a.mean(column), b.mean(column)
        if va is None and vb is None:
            continue
        out.append(MetricDelta(column, label, va, vb, higher, _rel(va, vb), note="one number per run"))
    return out


def quality_deltas(a: RunSet, b: RunSet) -> list[tuple[str, str, float | None, float | None, float | None]]:
    """(metric, category, a, b, b - a) for every category either run scored."""
    keys = sorted(set(a.quality) | set(b.quality))
    out = []
    for metric, category in keys:
        va, vb = a.quality.get((metric, category)), b.quality.get((metric, category))
        out.append((metric, category, va, vb, None if va is None or vb is None else vb - va))
    return out


def _throughput(a: RunSet, b: RunSet, scenario: str) -> list[MetricDelta]:
    """LoadGen's samples/s (one number per run: shown, not judged), and the typical throughput: the
    samples per median time between completions (Offline; SingleStream: per median latency), judged by
    the bootstrap CI of that median's change. The median, not the mean: a load spike on a shared machine
    stretches a few batches, a slower backend stretches them all."""
    va, vb = a.mean("samples_per_second"), b.mean("samples_per_second")
    loadgen = MetricDelta("samples_per_second", "samples/s", va, vb, True, _rel(va, vb), note="LoadGen's figure")
    if scenario == "Offline":
        xa, xb, what = a.completion_gaps_ms, b.completion_gaps_ms, "median time between completions"
        per = BATCH_NOTE
    elif scenario == "SingleStream":
        xa, xb, what, per = a.latencies_ms, b.latencies_ms, "median per-sample latency", "samples"
    else:
        return [_replace(loadgen, note="Server: LoadGen sets the rate; not judged")]
    typical = MetricDelta(TYPICAL, f"typical {per}/s", _rate(xa), _rate(xb), True, None)
    ci = _bootstrap_ratio(xa, xb, _percentile_of(50.0))
    if ci is None or typical.a is None or typical.b is None:
        return [loadgen, _replace(typical, note=f"too few samples for the {what}; not judged")]
    # time per completion up by x -> throughput change 1/(1+x) - 1 (interval ends swap)
    change = typical.b / typical.a - 1.0
    tci = (1.0 / (1.0 + ci[1]) - 1.0, 1.0 / (1.0 + ci[0]) - 1.0)
    judged = _replace(
        typical, change=change, ci=tci, significant=not (tci[0] <= 0.0 <= tci[1]), note=f"CI from the {what}"
    )
    return [loadgen, judged]


def typical_rates(runs: RunSet, scenario: str) -> list[float]:
    """The typical throughput of each run of a pooled baseline (see _throughput), where it has one."""
    out = []
    for lat in runs.per_run_latencies_ms:
        rate = _rate(completion_gaps(lat) if scenario == "Offline" else lat)
        if rate is not None:
            out.append(rate)
    return out


def _rate(x: np.ndarray) -> float | None:
    if len(x) < MIN_SAMPLES:
        return None
    median = float(np.median(x))
    return 1000.0 / median if median > 0 else None


def _percentile(a: RunSet, b: RunSet, column: str, label: str, q: float) -> MetricDelta:
    va, vb = a.mean(column), b.mean(column)
    base = MetricDelta(column, label, va, vb, False, _rel(va, vb))
    ci = _bootstrap_ratio(a.latencies_ms, b.latencies_ms, _percentile_of(q))
    if ci is None:
        return _replace(base, note="too few per-sample latencies; not judged")
    p_value = None
    if q == 50.0:
        from scipy.stats import mannwhitneyu

        p_value = float(mannwhitneyu(a.latencies_ms, b.latencies_ms, alternative="two-sided").pvalue)
    return _replace(
        base, ci=ci, significant=not (ci[0] <= 0.0 <= ci[1]), p_value=p_value, note="CI from per-sample latencies"
    )


def _bootstrap_ratio(
    xa: np.ndarray, xb: np.ndarray, stat: Callable[[np.ndarray, int], np.ndarray]
) -> tuple[float, float] | None:
    """95% CI of stat(b) / stat(a) - 1, or None with too few samples."""
    if len(xa) < MIN_SAMPLES or len(xb) < MIN_SAMPLES:
        return None
    from scipy.stats import bootstrap

    def change(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        sx = stat(x, axis)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(stat(y, axis) / sx - 1.0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap(
            (xa, xb),
            change,
            vectorized=True,
            paired=False,
            n_resamples=RESAMPLES,
            batch=max(1, 2_000_000 // max(len(xa), len(xb))),
            confidence_level=CONFIDENCE,
            method="percentile",
            rng=np.random.default_rng(0),
        )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(lo) or math.isnan(hi):
        return None
    return lo, hi


def _mean(x: np.ndarray, axis: int) -> np.ndarray:
    return np.asarray(np.mean(x, axis=axis))


def _percentile_of(q: float) -> Callable[[np.ndarray, int], np.ndarray]:
    def stat(x: np.ndarray, axis: int) -> np.ndarray:
        return np.asarray(np.percentile(x, q, axis=axis))

    return stat


def _rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return (b - a) / a


def _replace(d: MetricDelta, **changes: object) -> MetricDelta:
    import dataclasses

    return dataclasses.replace(d, **changes)  # type: ignore[arg-type]
