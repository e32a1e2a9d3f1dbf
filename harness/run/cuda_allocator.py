"""The CUDA allocator setting the harness runs with unless the user chose one.

On an H100 with PyTorch's default allocator, full Offline runs at the batch `fit` found (SDXL 40,
FLUX.2-klein-4B 34, at 1024 x 1024) ran out of memory asking for 20 and 17 GiB (512 MiB per image) while
25 and 21 GiB of the allocator's cache was free but fragmented. With `expandable_segments:True` the same
batches ran in full (benchmarks/results/issue5_h100_2026-11-26_largest_batch/).

The setting must be in the environment before CUDA's allocator starts, so `python -m harness` applies
it before importing anything else; worker processes inherit it. A user who sets either variable, even
to an empty value, gets exactly what they set. The manifest's `environment` records the value a run
had.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

# PYTORCH_ALLOC_CONF is the newer name; PYTORCH_CUDA_ALLOC_CONF is the one every torch 2.x reads for
# CUDA (torch 2.9.1 ignored expandable_segments under the new name, pytorch/pytorch#183387).
USER_SETTINGS = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")
DEFAULT_NAME = "PYTORCH_CUDA_ALLOC_CONF"
DEFAULT_VALUE = "expandable_segments:True"


def apply_default_allocator_settings(environ: MutableMapping[str, str] | None = None) -> bool:
    """Sets the default unless the user set an allocator variable; True when it set it."""
    env = os.environ if environ is None else environ
    if any(name in env for name in USER_SETTINGS):
        return False
    env[DEFAULT_NAME] = DEFAULT_VALUE
    return True
