"""One LoadGen run through a chosen SUT, for tools/sut_overhead.py: the SUTs as harness/sut/choice.py makes them,
each query's enqueue time noted off LoadGen's issue thread, the clocks read around the run, and a worker thread
that dies ending the run with its reason rather than leaving LoadGen waiting."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import Backend
from harness.config import RunConfig
from harness.data.qsl import QuerySampleLibrary
from harness.loadgen.logs import DetailLog, Verdict, read_detail_log
from harness.loadgen.settings import build_test_settings
from harness.run.benchmark import drive_loadgen
from harness.run.model import RunInputs, batch_policy
from harness.sut.batcher import BatchPolicy
from harness.sut.choice import SutChoice, make_sut, native_core
from harness.workers.in_process import InProcessWorker, Worker
from tools.sut_overhead_trace import ClockPair

EnqueueLog = list[tuple[int, int]]  # (sample index, enqueue CLOCK_MONOTONIC ns), noted when a worker pulls it


SutMaker = Callable[[QuerySampleLibrary, BatchPolicy, Sequence[Worker], EnqueueLog], Any]


def _note_enqueues(sut: Any, log: EnqueueLog) -> Any:
    """Note each query's (sample index, enqueue ns) as a worker pulls its batch, through the worker-side hooks
    both SUTs share (`_next_batch`, `_batch_indices`, `_batch_enqueued_ns`): off LoadGen's issue thread."""
    pull = sut._next_batch

    def next_batch() -> Any:
        batch = pull()
        if batch is not None:
            log.extend(zip(sut._batch_indices(batch), sut._batch_enqueued_ns(batch), strict=True))
        return batch

    setattr(sut, "_next_batch", next_batch)  # noqa: B010 (an instance attribute over the method, this run only)
    return sut


def _chosen_sut(
    picked: SutChoice, qsl: QuerySampleLibrary, policy: BatchPolicy, workers: Sequence[Worker], log: EnqueueLog
) -> Any:
    return _note_enqueues(make_sut(picked, qsl, policy, workers), log)


def sut_makers(kinds: Sequence[str]) -> tuple[dict[str, SutMaker], dict[str, str]]:
    """The SUTs this process can run (harness/sut/choice.py decides, as for a run), and for the others why not."""
    makers: dict[str, SutMaker] = {}
    missing: dict[str, str] = {}
    for kind in kinds:
        core, reason = native_core()
        if kind == "native" and core is None:
            missing[kind] = reason
            continue
        picked = SutChoice(kind, kind, reason if kind == "native" else "sut.kind=python")
        makers[kind] = functools.partial(_chosen_sut, picked)
    return makers, missing


@dataclass
class LoadGenRun:
    detail: DetailLog
    verdict: Verdict
    samples_per_s: float | None
    enqueues: EnqueueLog = field(default_factory=list)
    clocks: tuple[ClockPair, ClockPair] | None = None
    trace: Path | None = None


class RunFailed(RuntimeError):
    def __init__(self, message: str, loadgen_alive: bool) -> None:
        super().__init__(message)
        self.loadgen_alive = loadgen_alive  # LoadGen's thread still runs: the process must end hard


def _guard_worker_threads(sut: Any, died: list[str]) -> None:
    """A worker thread that raises outside the backend call (in the SUT's own completion code) would die and
    leave LoadGen waiting for ever: note why, and abort the SUT so that every query is answered and the run
    ends (drive_loadgen then stops after sut.drain_timeout_s at most)."""
    pull_and_run = sut._pull_and_run

    def guarded(worker: Worker) -> None:
        try:
            pull_and_run(worker)
        except BaseException as exc:
            died.append(f"{type(exc).__name__}: {exc}")
            sut.abort()
            raise

    setattr(sut, "_pull_and_run", guarded)  # noqa: B010 (an instance attribute over the method, this run only)


def run_loadgen(cfg: RunConfig, inputs: RunInputs, backend: Backend, make: SutMaker, out: Path) -> LoadGenRun:
    out.mkdir(parents=True, exist_ok=True)
    enqueues: EnqueueLog = []
    died: list[str] = []
    sut = make(inputs.qsl, batch_policy(cfg), [InProcessWorker(backend)], enqueues)
    _guard_worker_threads(sut, died)
    before = ClockPair.read()
    outcome = drive_loadgen(cfg, sut, inputs.qsl, build_test_settings(cfg), out, progress=None)
    after = ClockPair.read()
    if sut.failure is not None or died or outcome.loadgen_alive:
        why = sut.failure.message() if sut.failure is not None else (died[0] if died else "LoadGen did not end")
        raise RunFailed(f"the {cfg.run.scenario} run in {out} failed: {why}", outcome.loadgen_alive)
    detail = read_detail_log(out / "mlperf_log_detail.txt")
    trace = out / "mlperf_log_trace.json"
    sps = detail.samples_per_second(cfg.run.scenario)
    return LoadGenRun(detail, detail.verdict(), sps, enqueues, (before, after), trace if trace.is_file() else None)
