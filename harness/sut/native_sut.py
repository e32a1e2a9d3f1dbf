"""The native SUT: LoadGen's IssueQuery and the batcher in C++ (native/sut/, harness_native._sut_core).

LoadGen calls the C++ core directly: `IssueQuery` timestamps and enqueues without the GIL, so nothing a
worker thread does in Python (uint8 conversion, image hooks, unpickling pool results) can delay LoadGen's
issue thread. Worker threads pull batches through `core.next_batch()` (the GIL released while it waits)
and hand images back through `core.complete(batch, images)`, which calls QuerySamplesComplete from C++
with pointers into `images`, held here until it returns.

Everything on the worker side is the Python SUT's own code (this is a subclass of it): the statistics,
a failing worker, retries by requeueing at the head, the image hook, start and stop. Only where queries
wait and how they are answered differ, and `abort` answers later queries on arrival in C++.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from harness.data.qsl import QuerySampleLibrary
from harness.loadgen.session import LoadGenSession, ReadySut, SampleLibrary
from harness.sut.batcher import BatchPolicy
from harness.sut.python_sut import ImageHook, SutStats, SystemUnderTest
from harness.workers.in_process import Worker


class NativeSystemUnderTest(SystemUnderTest):
    """The Python SUT's worker side over the C++ core: `session()` hands LoadGen the core's handle."""

    def __init__(
        self,
        core_module: ModuleType,
        qsl: QuerySampleLibrary,
        policy: BatchPolicy,
        workers: Sequence[Worker],
        image_hook: ImageHook | None = None,
        retries: int = 0,
    ) -> None:
        # `core_module` is harness_native._sut_core, imported by harness/sut/choice.py (which checks that it
        # and LoadGen's module are the same build)
        self.core = core_module.SutCore(policy.max_batch_size, policy.max_wait_ns)
        self._init_worker_side(qsl, workers, image_hook, retries)

    # LoadGen reaches the C++ core through its handle, never through Python.
    def session(self, qsl: SampleLibrary) -> LoadGenSession:
        return LoadGenSession(None, None, qsl, ready_sut=ReadySut(handle=self.core.handle(), owner=self.core))

    def issue_queries(self, query_samples: Sequence[Any]) -> None:
        raise RuntimeError("the native SUT is driven through its handle (session()), not through issue_queries")

    @property  # type: ignore[override]
    def stats(self) -> SutStats:
        """The worker side's records, with the issued and completed counts the C++ core keeps (queries
        answered on arrival after an abort never reach Python)."""
        self._stats.issued = self.core.issued
        self._stats.completed = self.core.completed
        return self._stats

    @stats.setter
    def stats(self, value: SutStats) -> None:
        self._stats = value

    def stop(self, timeout_s: float = 10.0) -> None:
        self.core.close()
        for t in self._threads:
            t.join(timeout_s)

    def abort(self) -> None:
        """Answer every queued query now, and every later one on arrival (in C++), with an empty response."""
        self.failed.set()
        self.core.abort()

    # Where queries wait and how they are answered ------------------------------------------------------
    def _next_batch(self) -> Any:
        return self.core.next_batch()

    def _batch_indices(self, batch: Any) -> list[int]:
        return batch.indices  # type: ignore[no-any-return]

    def _batch_enqueued_ns(self, batch: Any) -> list[int]:
        return batch.enqueued_ns  # type: ignore[no-any-return]

    def _requeue(self, batch: Any) -> None:
        self.core.requeue(batch)

    def _checked_images(self, images: np.ndarray) -> np.ndarray:
        # what core.complete needs, checked inside the worker's try: a wrong array fails the run with its
        # cause (as a raising backend does) instead of leaving the batch unanswered
        if images.dtype != np.uint8:
            raise TypeError(f"returned images of dtype {images.dtype}; LoadGen is handed uint8 NHWC images")
        return np.ascontiguousarray(images)

    def _complete(self, batch: Any, images: np.ndarray | None) -> None:
        if images is None:
            self.core.complete_empty(batch)
            return
        # `images` stays referenced here until complete() returns: LoadGen copies what it logs inside it
        try:
            handback_ns, latencies = self.core.complete(batch, images)
        except BaseException:
            self.core.complete_empty(batch)  # refused before LoadGen saw it: never leave LoadGen waiting
            raise
        with self._lock:
            if images.nbytes:
                self._stats.handback_ns.append(handback_ns)
                self._stats.sample_latencies.extend(latencies)
                if self._stats.first_image_unix_s is None:
                    self._stats.first_image_unix_s = time.time()
