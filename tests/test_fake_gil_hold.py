"""backend.gil_hold_ms on the fake backend: Python work that keeps the GIL, unlike the sleep of latency_ms."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from backends.base import BackendError, ModelSpec, PromptBatch
from backends.fake import FakeBackend, FakeOptions

SPEC = ModelSpec("fake", "", "none", 1, 1.0, 8, 8)
BATCH = PromptBatch((0, 1), ("a", "b"), ("", ""), np.zeros((2, 4, 2, 2), np.float32))


@pytest.fixture
def long_switch_interval() -> Iterator[None]:
    """A waiting thread asks for the GIL only after the switch interval: 1 s, far beyond every hold here."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _wake_delay_ms(options: FakeOptions) -> float:
    """Wake a waiting thread, then generate: how long until that thread ran Python? (Measured from the wake-up
    call, not compared with generate's return: numpy releases the GIL while it draws the images.)"""
    backend = FakeBackend(SPEC, options)
    go = threading.Event()
    woke_ns: list[int] = []

    def wait_then_note() -> None:
        go.wait(5.0)
        woke_ns.append(time.perf_counter_ns())

    t = threading.Thread(target=wait_then_note)
    t.start()
    time.sleep(0.05)  # the thread is waiting on `go`, outside the GIL
    start_ns = time.perf_counter_ns()
    go.set()
    backend.generate(BATCH)
    t.join(5.0)
    assert woke_ns, "the helper thread never ran"
    return (woke_ns[0] - start_ns) / 1e6


def test_a_gil_hold_keeps_other_threads_out_and_a_sleep_does_not(long_switch_interval: None) -> None:
    assert _wake_delay_ms(FakeOptions(latency_ms=100.0)) < 100.0  # sleeping releases the GIL
    assert _wake_delay_ms(FakeOptions(gil_hold_ms=100.0)) >= 100.0


def test_generate_lasts_at_least_the_hold() -> None:
    backend = FakeBackend(SPEC, FakeOptions(gil_hold_ms=20.0))
    start = time.perf_counter_ns()
    images = backend.generate(BATCH).images
    assert time.perf_counter_ns() - start >= 20_000_000
    assert images.shape == (2, 8, 8, 3)
    assert backend.describe()["gil_hold_ms"] == 20.0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_bad_gil_hold_is_refused(bad: float) -> None:
    with pytest.raises(BackendError, match="gil_hold_ms must be a finite number >= 0"):
        FakeBackend(SPEC, FakeOptions(gil_hold_ms=bad))


def test_reuse_images_hands_back_one_batch_made_once_per_size() -> None:
    """backend.reuse_images, the null backend of tools.sut_overhead: the first batch's images, every time."""
    backend = FakeBackend(SPEC, FakeOptions(reuse_images=True))
    first = backend.generate(BATCH).images
    other = PromptBatch((5, 6), ("c", "d"), ("", ""), np.zeros((2, 4, 2, 2), np.float32))
    again = backend.generate(other).images
    assert again is first and not first.flags.writeable
    assert np.array_equal(first[0], FakeBackend.image_for(0, 8, 8))
    single = PromptBatch((7,), ("e",), ("",), np.zeros((1, 4, 2, 2), np.float32))
    assert backend.generate(single).images.shape[0] == 1
    plain = FakeBackend(SPEC, FakeOptions())
    assert np.array_equal(plain.generate(other).images[0], FakeBackend.image_for(5, 8, 8))
