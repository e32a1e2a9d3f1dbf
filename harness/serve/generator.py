"""Server-side dynamic batching: request handlers queue their images in the run's Batcher and await one
future per image; a generation thread per worker (one by default) pulls batches and runs the backend.

A request with n images puts n items in the queue, so the images of concurrent requests share batches
(`sut.max_batch_size`, `sut.max_wait_ms`). A backend exception fails that batch's images (their requests
answer 500) and the thread goes on with the next batch; on shutdown the queued images fail with
ShuttingDown (503) and the batch in progress finishes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.base import PromptBatch
from harness.serve.metrics import ServeMetrics
from harness.serve.schema import ImageItem
from harness.sut.batcher import Batcher, BatchPolicy, QueuedQuery
from harness.workers.in_process import Worker

log = logging.getLogger(__name__)


class GenerationFailed(Exception):
    """The backend raised on the batch that held this image."""


class ShuttingDown(Exception):
    """The server is stopping: the image was still queued."""


@dataclass(frozen=True)
class ImageResult:
    image: np.ndarray  # (H, W, 3) uint8, a view into its batch's array
    queue_ns: int  # arrival -> its batch's start
    generate_ns: int  # its batch's backend call
    batch_id: int


@dataclass(frozen=True)
class _Pending:
    item: ImageItem
    future: asyncio.Future[ImageResult]
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future[ImageResult], result: ImageResult | BaseException) -> None:
    if future.done():  # the request was cancelled (client gone)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class Generator:
    def __init__(self, workers: Sequence[Worker], policy: BatchPolicy, metrics: ServeMetrics) -> None:
        self._batcher = Batcher(policy)
        self._metrics = metrics
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._batch_ids = itertools.count()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._run, args=(w,), name=f"serve-generate-{i}", daemon=True)
            for i, w in enumerate(workers)
        ]
        for t in self._threads:
            t.start()

    async def generate(self, items: Sequence[ImageItem], arrival_ns: int) -> list[ImageResult]:
        """Queue the images (arrived at `arrival_ns`, perf_counter_ns) and wait for them; raises
        GenerationFailed or ShuttingDown."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[ImageResult]] = []
        queries: list[QueuedQuery] = []
        with self._lock:  # with close(): an image is either queued before the drain or refused
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            for item in items:
                query_id = next(self._ids)
                future: asyncio.Future[ImageResult] = loop.create_future()
                self._pending[query_id] = _Pending(item, future, loop)
                futures.append(future)
                queries.append(QueuedQuery(query_id, item.label, arrival_ns))
            self._batcher.put(queries)
            self._metrics.queued.inc(len(queries))
        return list(await asyncio.gather(*futures))

    def close(self) -> None:
        """Refuse new images, fail the queued ones (ShuttingDown); the batch in progress finishes."""
        with self._lock:
            self._closing = True
            drained = self._batcher.drain()
            self._batcher.close()
            pending = [self._pending.pop(q.query_id) for q in drained]
            self._metrics.queued.dec(len(pending))
        if pending:
            log.info("shutting down: %d queued images answered 503", len(pending))
        self._answer(pending, [ShuttingDown("the server is shutting down")] * len(pending))

    def join(self, timeout_s: float) -> bool:
        """Wait for the generation threads to finish their batch; False if one is still running."""
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # -- the generation thread ----------------------------------------------------------------------

    def _run(self, worker: Worker) -> None:
        try:
            while (batch := self._batcher.next_batch()) is not None:
                with self._lock:
                    pending = [self._pending.pop(q.query_id) for q in batch]
                    self._metrics.queued.dec(len(pending))
                self._run_batch(worker, batch, pending)
        except BaseException:  # a bug here must not leave requests waiting forever
            log.exception("the generation thread of %s stopped", worker.name)
            self.close()
            raise

    def _run_batch(self, worker: Worker, batch: list[QueuedQuery], pending: list[_Pending]) -> None:
        items = [p.item for p in pending]
        start_ns = time.perf_counter_ns()
        try:  # everything that can raise answers this batch's requests
            prompt_batch = PromptBatch(
                sample_indices=tuple(i.label for i in items),
                prompts=tuple(i.prompt for i in items),
                negative_prompts=tuple(i.negative_prompt for i in items),
                latents=np.ascontiguousarray(np.concatenate([i.latent for i in items])),
            )
            images = worker.run(prompt_batch).images
            if images.shape[0] != len(items):
                raise RuntimeError(f"the backend returned {images.shape[0]} images for a batch of {len(items)}")
        except Exception as exc:  # the backend's failure is this batch's requests' 500; the server goes on
            log.error("a batch of %d failed: %s: %s", len(items), type(exc).__name__, exc)
            self._metrics.errors.labels(type="backend").inc()
            failed = GenerationFailed(f"the backend failed on a batch of {len(items)}: {type(exc).__name__}: {exc}")
            self._answer(pending, [failed] * len(pending))
            return
        generate_ns = time.perf_counter_ns() - start_ns
        batch_id = next(self._batch_ids)
        self._metrics.batch_size.observe(len(items))
        self._metrics.generate_seconds.observe(generate_ns / 1e9)
        results: list[ImageResult | BaseException] = []
        for k, query in enumerate(batch):
            queue_ns = start_ns - query.enqueued_ns
            self._metrics.queue_seconds.observe(queue_ns / 1e9)
            results.append(ImageResult(images[k], queue_ns, generate_ns, batch_id))
        self._answer(pending, results)

    @staticmethod
    def _answer(pending: Sequence[_Pending], results: Sequence[Any]) -> None:
        for p, result in zip(pending, results, strict=True):
            try:
                p.loop.call_soon_threadsafe(_resolve, p.future, result)
            except RuntimeError:  # the event loop is closed: the server is gone, nobody waits
                pass
