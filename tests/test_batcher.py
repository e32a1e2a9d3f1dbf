"""The batcher keeps arrival order, never exceeds its limit, and waits no longer than allowed."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.sut.batcher import Batcher, BatchPolicy, QueuedQuery


def _queries(indices: list[int]) -> list[QueuedQuery]:
    now = time.perf_counter_ns()
    return [QueuedQuery(query_id=1000 + k, sample_index=i, enqueued_ns=now) for k, i in enumerate(indices)]


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.lists(st.integers(0, 10_000), min_size=0, max_size=40), max_size=8),
    limit=st.integers(1, 16),
)
def test_batches_keep_order_and_respect_the_limit(chunks: list[list[int]], limit: int) -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=limit))
    sent: list[int] = []
    for chunk in chunks:
        batcher.put(_queries(chunk))
        sent.extend(chunk)
    batcher.close()
    got: list[int] = []
    sizes: list[int] = []
    while (batch := batcher.next_batch()) is not None:
        sizes.append(len(batch))
        got.extend(q.sample_index for q in batch)
    assert got == sent
    # Everything was queued before the first pull: batches fill to the limit across the put() chunks,
    # and only the last may be smaller.
    full, rest = divmod(len(sent), limit)
    assert sizes == [limit] * full + ([rest] if rest else [])


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 100), limit=st.integers(1, 16))
def test_offline_batches_are_full_except_the_last(n: int, limit: int) -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=limit))
    batcher.put(_queries(list(range(n))))
    batcher.close()
    sizes = []
    while (batch := batcher.next_batch()) is not None:
        sizes.append(len(batch))
    assert sizes[:-1] == [limit] * (len(sizes) - 1)
    assert sum(sizes) == n and 1 <= sizes[-1] <= limit


def test_server_batch_waits_for_more_queries_until_the_deadline() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=4, max_wait_ns=300_000_000))
    batcher.put(_queries([0]))

    def late() -> None:
        time.sleep(0.05)
        batcher.put(_queries([1, 2]))

    threading.Thread(target=late).start()
    batch = batcher.next_batch()
    assert [q.sample_index for q in batch] == [0, 1, 2]  # waited for the late ones


def test_server_batch_leaves_at_the_deadline_when_not_full() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=8, max_wait_ns=50_000_000))
    batcher.put(_queries([7]))
    start = time.perf_counter()
    batch = batcher.next_batch()
    waited = time.perf_counter() - start
    assert [q.sample_index for q in batch] == [7]
    assert 0.03 <= waited < 1.0


def test_server_batch_leaves_at_once_when_full() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=2, max_wait_ns=5_000_000_000))
    batcher.put(_queries([1, 2, 3]))
    start = time.perf_counter()
    assert [q.sample_index for q in batcher.next_batch()] == [1, 2]
    assert time.perf_counter() - start < 1.0


def test_queries_older_than_the_wait_go_at_once() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=8, max_wait_ns=10_000_000_000))
    old = time.perf_counter_ns() - 20_000_000_000
    batcher.put([QueuedQuery(1, 5, old)])
    start = time.perf_counter()
    assert [q.sample_index for q in batcher.next_batch()] == [5]
    assert time.perf_counter() - start < 1.0


def test_close_wakes_a_waiting_worker() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=1))
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(batcher.next_batch()))
    t.start()
    time.sleep(0.05)
    batcher.close()
    t.join(2)
    assert not t.is_alive() and result == [None]


def test_several_workers_share_one_batcher_without_loss_or_duplicates() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=3, max_wait_ns=1_000_000))
    seen: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while (batch := batcher.next_batch()) is not None:
            assert len(batch) <= 3
            with lock:
                seen.extend(q.sample_index for q in batch)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for start in range(0, 300, 7):
        batcher.put(_queries(list(range(start, min(start + 7, 300)))))
    time.sleep(0.1)
    batcher.close()
    for t in threads:
        t.join(5)
    assert sorted(seen) == list(range(300))


def test_drain_empties_the_queue() -> None:
    batcher = Batcher(BatchPolicy(max_batch_size=2))
    batcher.put(_queries([1, 2, 3]))
    assert [q.sample_index for q in batcher.drain()] == [1, 2, 3]
    assert len(batcher) == 0


@pytest.mark.parametrize("bad", [dict(max_batch_size=0), dict(max_batch_size=1, max_wait_ns=-1)])
def test_bad_policy_is_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        BatchPolicy(**bad)
