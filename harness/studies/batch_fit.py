"""The largest batch that fits: double the batch size until a call runs out of memory, then bisect.

`probe(batch_size)` makes one call at that size and says how it went: status "ok", "oom" (out of
memory: the batch does not fit) or "error" (anything else: the search stops, since a larger batch
says nothing more). Batch 1, 2, 4, ... up to `max_batch` (and `max_batch` itself when it is not a
power of two); after the first "oom" the search bisects between the largest size that fitted and
the smallest that did not, so the answer is exact to one image in about 2 log2(answer) calls.

`limited_by` says why the search stopped: "memory" (the answer + 1 ran out of memory), "max_batch"
(every size up to the cap fitted: the real limit lies above it), or "error".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# batch size -> {"status": "ok" | "oom" | "error", plus whatever the caller records (time, memory, error)}
ProbeFn = Callable[[int], dict[str, Any]]

# How out-of-memory reads in the libraries the backends use: torch (CUDA and CPU), Python's
# MemoryError, ONNX Runtime ("Failed to allocate memory"), and the allocation failures that cuBLAS,
# cuDNN and the CUDA runtime report near the limit instead of torch's own OutOfMemoryError.
OUT_OF_MEMORY = re.compile(
    r"OutOfMemoryError|MemoryError|out of memory|Failed to allocate memory"
    r"|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation",
    re.IGNORECASE,
)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    return bool(OUT_OF_MEMORY.search(f"{type(exc).__name__}: {exc}"))


@dataclass
class FitResult:
    largest_batch: int  # 0: not even batch 1 fitted (or batch 1 failed)
    limited_by: str  # "memory" | "max_batch" | "error"
    probes: list[dict[str, Any]] = field(default_factory=list)  # in the order they ran, each with batch_size


def find_largest_batch(probe: ProbeFn, max_batch: int) -> FitResult:
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    probes: list[dict[str, Any]] = []

    def run(batch_size: int) -> str:
        result = {"batch_size": batch_size, **probe(batch_size)}
        probes.append(result)
        return str(result["status"])

    fits, too_big = 0, 0  # the largest size that fitted, the smallest that did not (0 = none yet)
    size = 1
    while True:
        status = run(size)
        if status == "error":
            return FitResult(fits, "error", probes)
        if status == "oom":
            too_big = size
            break
        fits = size
        if size == max_batch:
            return FitResult(fits, "max_batch", probes)
        size = min(size * 2, max_batch)
    while too_big - fits > 1:
        size = (fits + too_big) // 2
        status = run(size)
        if status == "error":
            return FitResult(fits, "error", probes)
        if status == "oom":
            too_big = size
        else:
            fits = size
    return FitResult(fits, "memory", probes)
