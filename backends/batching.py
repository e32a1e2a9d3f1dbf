"""Batch shapes for backends with fixed shapes: cut or pad a PromptBatch, pick the size to pad to.

torch-compile (static shapes) and tensorrt (one optimization profile per batch size) run only
the batch sizes they warmed up; a smaller batch is padded up to the next of them by repeating its
last row, and the extra images are dropped. Padding costs compute, never correctness: a row's
image does not depend on the other rows of its batch (the contract suite checks that a batch of N
equals N single runs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backends.base import BackendError, PromptBatch


def resize_batch(batch: PromptBatch, size: int) -> PromptBatch:
    """`batch` cut to its first `size` rows, or padded to `size` by repeating its last row."""
    n = len(batch)
    if size < 1 or n < 1:
        raise ValueError(f"resize_batch: cannot make a batch of {size} from one of {n}")
    rows = list(range(min(size, n))) + [n - 1] * max(0, size - n)
    return PromptBatch(
        sample_indices=tuple(batch.sample_indices[i] for i in rows),
        prompts=tuple(batch.prompts[i] for i in rows),
        negative_prompts=tuple(batch.negative_prompts[i] for i in rows),
        latents=np.ascontiguousarray(np.asarray(batch.latents)[rows]),
        encoded=tuple(batch.encoded[i] for i in rows) if batch.encoded else (),
    )


def padded_size(n: int, sizes: Sequence[int], who: str) -> int:
    """The smallest of `sizes` that holds `n` rows; BackendError if none does."""
    fitting = [s for s in sizes if s >= n]
    if not fitting:
        raise BackendError(
            f"{who}: a batch of {n} is larger than every warmed-up batch size {sorted(sizes)}; "
            "set backend.warmup_batch_sizes to include it (the runner fills in the sizes the SUT sends)"
        )
    return min(fitting)
