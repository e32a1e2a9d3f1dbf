"""The Python SUT's worker loop without LoadGen: a failure after the backend (the image hook saving PNGs, the
hand-back itself) ends the run with its cause instead of killing the worker thread, which would leave LoadGen
waiting for its queries forever."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from backends.base import ImageBatch, PromptBatch
from harness.sut.batcher import Batcher, BatchPolicy
from harness.sut.python_sut import SystemUnderTest


@dataclass
class Query:  # what LoadGen's QuerySample carries
    id: int
    index: int


class StubQsl:
    def batch(self, indices: Sequence[int]) -> PromptBatch:
        n = len(indices)
        return PromptBatch(tuple(indices), ("p",) * n, ("",) * n, np.zeros((n, 4, 2, 2), np.float32))


class ZeroWorker:
    name = "worker-0"
    backend_name = "stub"

    def run(self, batch: PromptBatch) -> ImageBatch:
        return ImageBatch(np.zeros((len(batch), 4, 4, 3), np.uint8))

    def describe(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class RecordingSut(SystemUnderTest):
    """Answers queries into a list instead of LoadGen; `fail_complete` makes the hand-back raise."""

    def __init__(self, *args: Any, fail_complete: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answered: list[tuple[int, bool]] = []  # (query id, with an image)
        self.fail_complete = fail_complete

    def _complete(self, queries: Any, images: np.ndarray | None) -> None:
        if self.fail_complete and images is not None:
            raise OSError("hand-back failed")
        self.answered += [(q.query_id, images is not None) for q in queries]


def _run(sut: RecordingSut) -> None:
    sut.start()
    try:
        sut.issue_queries([Query(i, i) for i in range(4)])
        assert sut.failed.wait(10), "the failure did not end the run"
    finally:
        sut.stop(timeout_s=5)
    assert all(not t.is_alive() for t in sut._threads)


def test_a_failing_image_hook_ends_the_run_with_its_cause() -> None:
    def hook(indices: Sequence[int], images: np.ndarray) -> None:
        raise OSError("disk full")

    sut = RecordingSut(StubQsl(), Batcher(BatchPolicy(2)), [ZeroWorker()], image_hook=hook)  # type: ignore[arg-type]
    _run(sut)
    assert sut.failure is not None and sut.failure.error == "OSError: disk full"
    assert sut.failure.sample_indices == (0, 1)
    assert sorted(q for q, _ in sut.answered) == [0, 1, 2, 3]  # every query answered: LoadGen can finish


@pytest.mark.parametrize("batch", [1, 4])
def test_a_failing_hand_back_ends_the_run_with_its_cause(batch: int) -> None:
    sut = RecordingSut(StubQsl(), Batcher(BatchPolicy(batch)), [ZeroWorker()], fail_complete=True)  # type: ignore[arg-type]
    _run(sut)
    assert sut.failure is not None and sut.failure.error == "OSError: hand-back failed"
