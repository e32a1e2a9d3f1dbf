"""The backend contract: what the harness hands a backend and what it gets back.

A backend turns a batch of prompts plus their fixed initial latents into uint8 RGB images.
It never sees LoadGen ids or pointers; the harness owns those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ModelSpec:
    """What a backend needs to know about the model to build and drive its pipeline.

    `path` is a local diffusers pipeline folder (model_index.json at its top), already resolved:
    backends never download anything.
    """

    name: str
    path: str
    pipeline: str  # diffusers pipeline class name, e.g. "StableDiffusionXLPipeline"
    steps: int
    guidance_scale: float
    height: int
    width: int
    scheduler: str = ""  # diffusers scheduler class name; "" keeps the checkpoint's own


@dataclass(frozen=True)
class PromptBatch:
    """One batch of work. `latents` is float32, shape (N, C, h, w), one row per prompt."""

    sample_indices: tuple[int, ...]
    prompts: tuple[str, ...]
    negative_prompts: tuple[str, ...]
    latents: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.sample_indices)
        if len(self.prompts) != n or len(self.negative_prompts) != n:
            raise ValueError(
                f"PromptBatch: {n} sample indices but {len(self.prompts)} prompts "
                f"and {len(self.negative_prompts)} negative prompts"
            )
        if self.latents.ndim != 4 or self.latents.shape[0] != n:
            raise ValueError(f"PromptBatch: latents must have shape (N={n}, C, h, w), got {self.latents.shape}")

    def __len__(self) -> int:
        return len(self.sample_indices)


@dataclass(frozen=True)
class ImageBatch:
    """Generated images: uint8, shape (N, H, W, 3), C-contiguous RGB."""

    images: np.ndarray
    stage_times_ns: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = self.images
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(f"ImageBatch: images must be uint8 (N, H, W, 3), got {a.dtype} {a.shape}")
        if not a.flags["C_CONTIGUOUS"]:
            raise ValueError("ImageBatch: images must be C-contiguous")

    def __len__(self) -> int:
        return int(self.images.shape[0])


@runtime_checkable
class Backend(Protocol):
    """What every backend implements. Construction must be cheap; `load` does the work."""

    name: str

    def load(self) -> None:
        """Load weights and move them to the device. Raises BackendError on failure."""

    def warmup(self, batch: PromptBatch) -> None:
        """Run representative work so that nothing lazy happens inside a timed run."""

    def generate(self, batch: PromptBatch) -> ImageBatch:
        """Generate one image per prompt, in order."""

    def describe(self) -> dict[str, Any]:
        """What goes into the manifest: versions, device, dtype, options, weights hash."""

    def close(self) -> None:
        """Free memory. Calling it twice is fine."""


class BackendError(Exception):
    """A backend could not load or run. The message says what, the value, and what is allowed."""
