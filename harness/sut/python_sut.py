"""The system under test: LoadGen's callbacks on one side, the batcher and workers on the other.

`issue_queries` only enqueues: LoadGen's issue thread must never wait for a model. One thread per
worker pulls batches, runs them, and completes the queries. Response buffers stay referenced until
`QuerySamplesComplete` has returned (LoadGen copies the bytes it logs inside that call).

A worker that raises fails the run: the error is recorded with the backend, worker and sample
indices, every pending and later query is answered at once with an empty response so LoadGen can
wind down, and the runner ends the run.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.data.qsl import QuerySampleLibrary
from harness.loadgen.module import lg
from harness.loadgen.session import LoadGenSession, SampleLibrary
from harness.sut.batcher import Batcher, QueuedQuery
from harness.workers.in_process import Worker

log = logging.getLogger(__name__)

# Called after each completed batch with (sample indices, images); used to save sample PNGs.
ImageHook = Callable[[Sequence[int], np.ndarray], None]


@dataclass(frozen=True)
class WorkerFailure:
    backend: str
    worker: str
    sample_indices: tuple[int, ...]
    error: str  # "ExceptionType: message"
    traceback: str

    def message(self) -> str:
        shown = ", ".join(str(i) for i in self.sample_indices[:16])
        more = f" (+{len(self.sample_indices) - 16} more)" if len(self.sample_indices) > 16 else ""
        return f"backend {self.backend!r} ({self.worker}) failed on samples [{shown}]{more}: {self.error}"


@dataclass
class SutStats:
    """What the harness measures on its side of the LoadGen boundary."""

    batch_sizes: Counter[int] = field(default_factory=Counter)
    queue_delays_ns: list[int] = field(default_factory=list)  # enqueue -> batch start, per sample
    batch_times_ns: list[int] = field(default_factory=list)  # worker.run wall time, per batch
    completed: int = 0
    issued: int = 0
    worker_batches: Counter[str] = field(default_factory=Counter)
    worker_samples: Counter[str] = field(default_factory=Counter)
    worker_busy_ns: Counter[str] = field(default_factory=Counter)
    batch_stages: list[dict[str, int]] = field(default_factory=list)  # backend stage times, per batch
    steps_ns: list[int] = field(default_factory=list)  # every denoising step of every batch
    handback_ns: list[int] = field(default_factory=list)  # QuerySamplesComplete, per batch
    # (sample index, ns from issue_queries to QuerySamplesComplete) per answered sample: the SUT's view
    # of each latency, for the distribution that LoadGen's summary gives only as percentiles
    sample_latencies: list[tuple[int, int]] = field(default_factory=list)
    first_image_unix_s: float | None = None  # wall clock when the first image was handed back (cold TTFI)


class SystemUnderTest:
    """The Python SUT: LoadGen calls `issue_queries` (under the GIL) and the queries wait in a Python Batcher.

    The worker side (threads, statistics, failures, retries, the image hook) is shared with the native SUT
    (harness/sut/native_sut.py), a subclass that replaces only where queries wait and how they are
    answered: `_next_batch`, `_batch_indices`, `_batch_enqueued_ns`, `_requeue`, `_complete` and `abort`.
    """

    def __init__(
        self,
        qsl: QuerySampleLibrary,
        batcher: Batcher,
        workers: Sequence[Worker],
        image_hook: ImageHook | None = None,
        retries: int = 0,
    ) -> None:
        self._init_worker_side(qsl, workers, image_hook, retries)
        self.batcher = batcher

    def _init_worker_side(
        self, qsl: QuerySampleLibrary, workers: Sequence[Worker], image_hook: ImageHook | None, retries: int
    ) -> None:
        if not workers:
            raise ValueError("the SUT needs at least one worker")
        self.qsl = qsl
        self.workers = list(workers)
        self.image_hook = image_hook
        self.stats = SutStats()
        self.retries_left = retries
        self.retried: list[WorkerFailure] = []  # failures answered by re-sending the batch elsewhere
        self._live_workers = len(self.workers)
        self.failure: WorkerFailure | None = None
        self.failed = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # LoadGen callbacks ---------------------------------------------------------------------------
    def issue_queries(self, query_samples: Sequence[lg.QuerySample]) -> None:
        now = time.perf_counter_ns()
        queries = [QueuedQuery(q.id, q.index, now) for q in query_samples]
        with self._lock:
            self.stats.issued += len(queries)
        if self.failed.is_set():
            self._complete(queries, None)
            return
        self.batcher.put(queries)

    def flush_queries(self) -> None:
        pass  # nothing is held back: the batcher's max wait bounds every query's stay

    def session(self, qsl: SampleLibrary) -> LoadGenSession:
        """The LoadGen session that drives this SUT: LoadGen calls issue_queries and flush_queries."""
        return LoadGenSession(self.issue_queries, self.flush_queries, qsl)

    # Worker threads ------------------------------------------------------------------------------
    def start(self) -> None:
        for worker in self.workers:
            t = threading.Thread(target=self._worker_loop, args=(worker,), name=f"sut-{worker.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 10.0) -> None:
        self.batcher.close()
        for t in self._threads:
            t.join(timeout_s)

    def _worker_loop(self, worker: Worker) -> None:
        try:
            self._pull_and_run(worker)
        finally:
            end_of_run = getattr(worker, "end_of_run", None)  # optional: what must end on this thread
            if end_of_run is not None:
                end_of_run()

    def _pull_and_run(self, worker: Worker) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if self.failed.is_set():
                self._complete(batch, None)
                continue
            indices = self._batch_indices(batch)
            start_ns = time.perf_counter_ns()
            try:
                result = worker.run(self.qsl.batch(indices))
                images = self._checked_images(result.images)
                if images.shape[0] != len(indices):
                    raise RuntimeError(f"returned {images.shape[0]} images for a batch of {len(indices)}")
            except Exception as exc:  # a worker error ends the run, with its cause, unless retried
                if self._retry_elsewhere(worker, indices, exc):
                    self._requeue(batch)
                    return  # this worker is out of the run; the others take its batch
                self._fail(worker, indices, exc)
                self._complete(batch, None)
                continue
            end_ns = time.perf_counter_ns()
            stats = self.stats  # once per batch: the native SUT's is a property
            with self._lock:
                stats.batch_sizes[len(indices)] += 1
                stats.batch_times_ns.append(end_ns - start_ns)
                stats.queue_delays_ns.extend(start_ns - t for t in self._batch_enqueued_ns(batch))
                stats.worker_batches[worker.name] += 1
                stats.worker_samples[worker.name] += len(indices)
                stats.worker_busy_ns[worker.name] += end_ns - start_ns
                if result.stage_times_ns:
                    stats.batch_stages.append(dict(result.stage_times_ns))
                stats.steps_ns.extend(getattr(result, "step_times_ns", ()))
            # A failure past the backend (the hand-back, or the image hook saving PNGs) must end the run too:
            # this thread would die with it and LoadGen would wait for its queries forever.
            try:
                self._complete(batch, images)
            except Exception as exc:
                self._fail(worker, indices, exc)  # aborts; a query LoadGen never got ends by drain_timeout_s
                continue
            if self.image_hook is not None:
                try:
                    self.image_hook(indices, images)
                except Exception as exc:
                    self._fail(worker, indices, exc)

    # Where queries wait and how they are answered: the Python batcher and lg.QuerySamplesComplete here,
    # the C++ core in the native SUT. A batch is whatever `_next_batch` returns.
    def _next_batch(self) -> Any:
        return self.batcher.next_batch()

    def _batch_indices(self, batch: Any) -> list[int]:
        return [q.sample_index for q in batch]

    def _batch_enqueued_ns(self, batch: Any) -> list[int]:
        return [q.enqueued_ns for q in batch]

    def _requeue(self, batch: Any) -> None:
        self.batcher.requeue(batch)

    def _checked_images(self, images: np.ndarray) -> np.ndarray:
        return images  # each image's ctypes.data and nbytes go to LoadGen as they are

    def _retry_elsewhere(self, worker: Worker, indices: list[int], exc: BaseException) -> bool:
        with self._lock:
            if self.retries_left <= 0 or self._live_workers <= 1:
                return False
            self.retries_left -= 1
            self._live_workers -= 1
            failure = _failure(worker, indices, exc)
            self.retried.append(failure)
        log.warning("%s; re-sending the batch to another worker", failure.message())
        return True

    def _fail(self, worker: Worker, indices: list[int], exc: BaseException) -> None:
        failure = _failure(worker, indices, exc)
        with self._lock:
            if self.failure is None:
                self.failure = failure
        log.error("%s", failure.message())
        self.abort()

    def abort(self) -> None:
        """Stop generating: answer every queued query now, and every later one on arrival, with an
        empty response, so LoadGen is never left waiting."""
        self.failed.set()
        self._complete(self.batcher.drain(), None)

    def _complete(self, queries: Any, images: np.ndarray | None) -> None:
        """Answer a batch: with its images, or (None) with empty responses."""
        if not queries:
            return
        if images is None:
            responses = [lg.QuerySampleResponse(q.query_id, 0, 0) for q in queries]
        else:
            responses = [
                lg.QuerySampleResponse(q.query_id, img.ctypes.data, img.nbytes)
                for q, img in zip(queries, images, strict=True)
            ]
        start_ns = time.perf_counter_ns()
        lg.QuerySamplesComplete(responses)
        end_ns = time.perf_counter_ns()
        handback_ns = end_ns - start_ns
        del images  # the buffers may go only now: LoadGen has copied what it logs
        with self._lock:
            self.stats.completed += len(queries)
            if responses and responses[0].size:
                self.stats.handback_ns.append(handback_ns)
                self.stats.sample_latencies.extend((q.sample_index, end_ns - q.enqueued_ns) for q in queries)
                if self.stats.first_image_unix_s is None:
                    self.stats.first_image_unix_s = time.time()


def _failure(worker: Worker, indices: list[int], exc: BaseException) -> WorkerFailure:
    remote = getattr(exc, "remote_traceback", "")  # the worker process's own traceback, if any
    local = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return WorkerFailure(
        backend=worker.backend_name,
        worker=worker.name,
        sample_indices=tuple(indices),
        error=f"{type(exc).__name__}: {exc}" if not remote else str(exc),
        traceback=remote or local,
    )
