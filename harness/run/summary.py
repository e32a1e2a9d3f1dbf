"""summary.json: the record of one run, and the one place its keys are named.

    summary = RunSummary.read(run_dir / "summary.json")       # or RunSummary.from_json(dict)
    summary.samples_per_second, summary.verdict().label(), summary.peak_memory_mib()

The run writes it once, after LoadGen's logs are read (`summarise`), and adds what the later steps measure
(accuracy, quality, time to first image, energy, cost) with `dataclasses.replace`. `to_json()` gives the
dict that goes to disk, key for key as before the record had a type (plus `schema_version`); `from_json()`
reads any summary.json written since, a missing key taking its default, so that older run directories
still load (their `schema_version` reads 0).

The parts that other modules build and own stay dicts here: `latency_ms` (LoadGen's percentiles, those it
logged), `timing` (measure.stage_stats), `peak_memory` (measure.memory), `accuracy` (run.accuracy_step),
`quality` (run.quality_step), `time_to_first_image_s` (run.first_image), `energy`, `cost`, `profile`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import EndpointStats
from harness.config import RunConfig
from harness.loadgen.logs import Verdict, read_detail_log
from harness.measure.memory import headline_memory_mib, peak_memory
from harness.measure.stage_stats import summarise_stages
from harness.sut.python_sut import SystemUnderTest
from harness.workers.process_pool import ProcessWorker

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LoadGenResult:
    """LoadGen's verdict as mlperf_log_detail.txt logged it (summary.json's `loadgen`)."""

    result_validity: str | None = None  # VALID, INVALID, or None when LoadGen logged no result
    invalid_reason: str | None = None  # performance runs only; early stopping's reason included
    early_stopping_result: Any = None
    early_stopping_met: bool | None = None
    min_duration_met: bool | None = None
    min_queries_met: bool | None = None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class HarnessStats:
    """What the SUT measured around the backend (summary.json's `harness`)."""

    queue_delay_ms: Mapping[str, float] = field(default_factory=dict)  # p50, p99, max
    batch_time_ms: Mapping[str, float] = field(default_factory=dict)
    pretokenized_samples: int = 0  # prompts tokenized in LoadGen's load_samples, off the clock


@dataclass(frozen=True)
class WorkerShare:
    """One worker's part of the run."""

    name: str
    batches: int
    samples: int
    busy_s: float


@dataclass(frozen=True)
class RetriedFailure:
    """A batch that failed on one worker and ran again on another."""

    worker: str
    sample_indices: tuple[int, ...]
    error: str


@dataclass(frozen=True)
class FailureRecord:
    """The backend failure that ended the run."""

    backend: str
    worker: str
    sample_indices: tuple[int, ...]
    error: str
    traceback: str


@dataclass(frozen=True)
class EndpointRecord:
    """A run through the `http` backend: the service as its client saw it (summary.json's `endpoint`).

    `latency_split_ms`: each answered sample's client-side latency ("e2e") and its contiguous parts,
    part -> {mean, p50, p99, max}: the server's queue, generate and encode times (its Server-Timing header),
    the client's decode, and the rest (network, transfer, HTTP). `responses_by_status`: every request
    attempt (warm-up included) by HTTP status, or "timeout" / "connection_error".
    """

    url: str = ""
    api: str = ""
    response_format: str = ""
    concurrency: int = 0
    comparable_with_mlperf_accuracy: bool = True
    not_comparable_reason: str | None = None
    server: Mapping[str, Any] = field(default_factory=dict)  # GET /health as the server answered it
    requests: int = 0
    responses_by_status: Mapping[str, int] = field(default_factory=dict)
    errors: int = 0  # attempts that were not 200
    retries: int = 0
    max_in_flight: int = 0  # the most requests the client had open at once
    samples: int = 0
    latency_split_ms: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    time_to_first_image_s: float | None = None
    time_to_first_image_from: str = (
        "the client's first contact (GET /health) to its first decoded image (the warm-up request)"
    )
    first_request_s: float | None = None  # the first request's own latency: a fresh server's first image


@dataclass(frozen=True)
class RunSummary:
    status: str = ""  # ok, failed, interrupted ("" only in a summary.json without it)
    error: str | None = None
    scenario: str = ""
    mode: str = "performance"
    backend: str = ""
    model: str = ""
    result_valid: bool = False
    valid_for_submission: bool = False
    submission_blockers: tuple[str, ...] = ()
    samples_per_second: float | None = None  # LoadGen's figure for the scenario
    latency_ms: Mapping[str, float] = field(default_factory=dict)  # mean, p50, p90, p95, p97, p99, p99.9
    batch_sizes: Mapping[str, int] = field(default_factory=dict)  # batch size (as text) -> batches
    samples_completed: int = 0
    samples_generated: int = 0  # padding included
    query_count: int | None = None
    loadgen: LoadGenResult = field(default_factory=LoadGenResult)
    harness: HarnessStats = field(default_factory=HarnessStats)
    workers: tuple[WorkerShare, ...] = ()
    retried_failures: tuple[RetriedFailure, ...] = ()
    timing: Mapping[str, Any] = field(default_factory=dict)
    phases_s: Mapping[str, float] = field(default_factory=dict)
    peak_memory: Mapping[str, float | None] = field(default_factory=dict)
    failure: FailureRecord | None = None
    run_dir: str = ""
    weights: str = "pretrained"
    profile: Mapping[str, Any] = field(default_factory=dict)
    accuracy: Mapping[str, Any] | None = None  # accuracy mode; not written when None
    quality: Mapping[str, Any] | None = None  # with quality.diversity_seeds > 0; not written when None
    time_to_first_image_s: Mapping[str, Any] = field(default_factory=dict)
    energy: Mapping[str, Any] | None = None
    cost: Mapping[str, Any] | None = None  # None when the run had no price
    endpoint: EndpointRecord | None = None  # runs through the http backend; not written otherwise
    schema_version: int = SCHEMA_VERSION

    # -- reading ----------------------------------------------------------------------------------

    def verdict(self) -> Verdict:
        """LoadGen's verdict and its reason, as the studies and the report show it."""
        return Verdict.of(self.loadgen.result_validity, self.loadgen.invalid_reason)

    def peak_memory_mib(self) -> float | None:
        """The one memory figure (CUDA reserved, else allocated, else the largest resident set)."""
        return headline_memory_mib(self.peak_memory)

    @property
    def accuracy_verdict(self) -> str | None:
        return None if self.accuracy is None else self.accuracy.get("verdict")

    # -- JSON ---------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The dict written to summary.json (tuples as lists; accuracy and quality only when present)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _OMITTED_WHEN_NONE and value is None:
                continue
            out[f.name] = _plain(value)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSummary:
        """A summary.json as read; missing keys take their defaults (older run directories: schema_version 0),
        keys this version does not know are left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        values["schema_version"] = int(data.get("schema_version", 0))
        values["submission_blockers"] = tuple(data.get("submission_blockers") or ())
        values["loadgen"] = _record(LoadGenResult, data.get("loadgen"))
        values["harness"] = _record(HarnessStats, data.get("harness"))
        values["workers"] = tuple(_record(WorkerShare, w) for w in data.get("workers") or ())
        values["retried_failures"] = tuple(_record(RetriedFailure, r) for r in data.get("retried_failures") or ())
        values["failure"] = _record(FailureRecord, data["failure"]) if data.get("failure") else None
        values["endpoint"] = _record(EndpointRecord, data["endpoint"]) if data.get("endpoint") else None
        for key in ("latency_ms", "batch_sizes", "timing", "phases_s", "peak_memory", "profile"):
            values[key] = data.get(key) or {}
        values["time_to_first_image_s"] = data.get("time_to_first_image_s") or {}
        return cls(**values)

    @classmethod
    def read(cls, path: Path) -> RunSummary:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def read_if_present(cls, path: Path | None) -> RunSummary | None:
        """The summary at `path`, or None when there is none (a run that stopped before LoadGen)."""
        return cls.read(path) if path is not None and path.is_file() else None


_OMITTED_WHEN_NONE = {"accuracy", "quality", "endpoint"}


def verdict_of(summary: RunSummary | None) -> Verdict:
    """LoadGen's verdict of a run that may have written no summary.json ("no summary.json")."""
    return summary.verdict() if summary is not None else Verdict.of(None, None, have_summary=False)


def as_summary(summary: RunSummary | Mapping[str, Any] | None) -> RunSummary | None:
    """A RunSummary from either form (a summary.json dict as read, or the record)."""
    if summary is None or isinstance(summary, RunSummary):
        return summary
    return RunSummary.from_json(summary)


def _plain(value: Any) -> Any:
    """JSON-ready: records as dicts, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _record(cls: Any, data: Mapping[str, Any] | None) -> Any:
    """One nested record from its dict: known keys only, lists as tuples, missing keys at their defaults."""
    if data is None:
        return cls()
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            v = data[f.name]
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**values)


# -- building it from a finished run ----------------------------------------------------------------


def _percentiles_ms(values_ns: Sequence[int]) -> dict[str, float]:
    if not values_ns:
        return {}
    a = np.asarray(values_ns, dtype=np.float64) / 1e6
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


def summarise(
    cfg: RunConfig,
    run_dir: Path,
    sut: SystemUnderTest,
    blockers: Sequence[str],
    phases: Mapping[str, float],
    wall_s: float,
    interrupted: bool,
) -> RunSummary:
    """What LoadGen's detail log and the SUT's statistics say about the run (the later steps add theirs)."""
    detail = read_detail_log(run_dir / "mlperf_log_detail.txt")
    status = "ok"
    error = None
    if interrupted:
        status, error = "interrupted", "interrupted by the user (Ctrl-C)"
    elif sut.failure is not None:
        status, error = "failed", sut.failure.message()
    result_valid = detail.result_valid and status == "ok" and not detail.errors
    verdict = detail.verdict()  # early stopping's reason included: LoadGen leaves result_invalid_reason empty
    blockers = list(blockers)
    if detail.errors:  # LoadGen finished, but its result cannot be trusted
        blockers.append(f"LoadGen logged errors: {'; '.join(detail.errors[:3])}")
    if cfg.run.mode != "performance":
        blockers.append("accuracy runs carry no performance result")
    elif not result_valid:
        blockers.append(f"LoadGen result is {verdict.validity or 'missing'}: {verdict.reason or 'LoadGen errors'}")
    endpoint = endpoint_record(sut)
    if endpoint is not None and not endpoint.comparable_with_mlperf_accuracy:
        blockers.append(endpoint.not_comparable_reason or "the endpoint's images are not comparable")
    stats = sut.stats
    failure = sut.failure
    return RunSummary(
        status=status,
        error=error,
        scenario=cfg.run.scenario,
        mode=cfg.run.mode,
        backend=cfg.run.backend,
        model=cfg.model.name,
        result_valid=result_valid,
        valid_for_submission=not blockers and status == "ok",
        submission_blockers=tuple(blockers),
        samples_per_second=detail.samples_per_second(cfg.run.scenario),
        latency_ms=detail.latency_ms(),
        batch_sizes={str(k): v for k, v in sorted(stats.batch_sizes.items())},
        samples_completed=stats.completed,
        samples_generated=sum(k * v for k, v in stats.batch_sizes.items()),
        query_count=detail.get("result_query_count"),
        loadgen=LoadGenResult(
            result_validity=detail.get("result_validity"),
            invalid_reason=(verdict.reason or None) if cfg.run.mode == "performance" else None,
            early_stopping_result=detail.get("early_stopping_result"),
            early_stopping_met=detail.get("early_stopping_met"),
            min_duration_met=detail.get("result_min_duration_met"),
            min_queries_met=detail.get("result_min_queries_met"),
            errors=tuple(detail.errors),
            warnings=tuple(detail.warnings),
        ),
        harness=HarnessStats(
            queue_delay_ms=_percentiles_ms(stats.queue_delays_ns),
            batch_time_ms=_percentiles_ms(stats.batch_times_ns),
            pretokenized_samples=sut.qsl.pretokenized,
        ),
        workers=tuple(
            WorkerShare(
                name=name,
                batches=stats.worker_batches[name],
                samples=stats.worker_samples[name],
                busy_s=round(stats.worker_busy_ns[name] / 1e9, 3),
            )
            for name in sorted(stats.worker_batches)
        ),
        retried_failures=tuple(
            RetriedFailure(worker=f.worker, sample_indices=tuple(f.sample_indices), error=f.error) for f in sut.retried
        ),
        timing=summarise_stages(
            stats.batch_stages,
            stats.steps_ns,
            stats.batch_times_ns,
            stats.handback_ns,
            wall_s,
            len(sut.workers),
        ),
        phases_s=dict(phases),
        peak_memory=peak_memory(worker_processes=any(isinstance(w, ProcessWorker) for w in sut.workers)),
        failure=None
        if failure is None
        else FailureRecord(
            backend=failure.backend,
            worker=failure.worker,
            sample_indices=tuple(failure.sample_indices),
            error=failure.error,
            traceback=failure.traceback,
        ),
        run_dir=str(run_dir),
        endpoint=endpoint,
    )


def endpoint_record(sut: SystemUnderTest) -> EndpointRecord | None:
    """The http backend's view of the service (its workers share one backend), or None for other backends."""
    backend = getattr(sut.workers[0], "backend", None)
    stats_fn = getattr(backend, "endpoint_stats", None)
    if stats_fn is None:
        return None
    stats: EndpointStats = stats_fn()
    split = {part: _split_ms(values) for part, values in stats.splits_ns.items() if values}
    return EndpointRecord(
        url=stats.url,
        api=stats.api,
        response_format=stats.response_format,
        concurrency=stats.concurrency,
        comparable_with_mlperf_accuracy=stats.comparable_with_mlperf_accuracy,
        not_comparable_reason=stats.not_comparable_reason or None,
        server=dict(stats.server),
        requests=stats.requests,
        responses_by_status=dict(sorted(stats.status_counts.items())),
        errors=sum(n for status, n in stats.status_counts.items() if status != "200"),
        retries=stats.retries,
        max_in_flight=stats.max_in_flight,
        samples=len(stats.splits_ns.get("e2e", ())),
        latency_split_ms=split,
        time_to_first_image_s=None if stats.first_image_s is None else round(stats.first_image_s, 4),
        first_request_s=None if stats.first_request_s is None else round(stats.first_request_s, 4),
    )


def _split_ms(values_ns: Sequence[int]) -> dict[str, float]:
    a = np.asarray(values_ns, dtype=np.float64) / 1e6
    return {
        "mean": round(float(a.mean()), 3),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "max": round(float(a.max()), 3),
    }
