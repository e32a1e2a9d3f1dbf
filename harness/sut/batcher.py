"""Forms batches from queued queries; workers pull a batch whenever they are free.

Pulling (rather than pushing batches onto a queue) is what makes dynamic batching work: queries that
arrive while every worker is busy accumulate, and the next free worker takes them as one batch. It is
also why several workers (one per device, or remote ones) can share one batcher unchanged.

Policies, by scenario:
- SingleStream: max_batch_size 1, no wait.
- Offline: max_batch_size = batch_size, no wait (LoadGen issues every sample in one call).
- Server: max_batch_size and max_wait_ns: the oldest waiting query waits at most max_wait_ns for
  the batch to fill (NVIDIA's harness waits up to a few seconds; the MLPerf reference never batches).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class QueuedQuery:
    query_id: int  # LoadGen's response id; opaque to everything but the SUT
    sample_index: int
    enqueued_ns: int


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    max_wait_ns: int = 0

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_wait_ns < 0:
            raise ValueError(f"max_wait_ns must be >= 0, got {self.max_wait_ns}")


class Batcher:
    """Thread-safe FIFO of queries; `put` never blocks, `next_batch` blocks until work or close."""

    def __init__(self, policy: BatchPolicy) -> None:
        self.policy = policy
        self._pending: deque[QueuedQuery] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, queries: Sequence[QueuedQuery]) -> None:
        with self._cond:
            self._pending.extend(queries)
            self._cond.notify_all()

    def requeue(self, queries: Sequence[QueuedQuery]) -> None:
        """Put queries back at the head of the queue (a failed batch sent to another worker)."""
        with self._cond:
            self._pending.extendleft(reversed(queries))
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiting worker; they get what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> list[QueuedQuery]:
        """Remove and return everything pending (used to answer queries after a failure)."""
        with self._cond:
            items = list(self._pending)
            self._pending.clear()
            return items

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)

    def next_batch(self) -> list[QueuedQuery] | None:
        """The next batch in arrival order, never larger than max_batch_size; None once closed."""
        limit = self.policy.max_batch_size
        with self._cond:
            while True:
                while not self._pending:
                    if self._closed:
                        return None
                    self._cond.wait()
                if self.policy.max_wait_ns > 0:
                    deadline_ns = self._pending[0].enqueued_ns + self.policy.max_wait_ns
                    while 0 < len(self._pending) < limit and not self._closed:
                        remaining_ns = deadline_ns - time.perf_counter_ns()
                        if remaining_ns <= 0:
                            break
                        self._cond.wait(remaining_ns / 1e9)
                if self._pending:  # else another worker took them while we waited: start over
                    n = min(limit, len(self._pending))
                    return [self._pending.popleft() for _ in range(n)]
