"""The backend contract: what the harness hands a backend and what it gets back.

A backend turns a batch of prompts plus their fixed initial latents into uint8 RGB images.
It never sees LoadGen ids or pointers; the harness owns those.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    # "pretrained": load `path`. "random": build the full-size architecture from the published
    # component configs in `components` with seeded random weights (performance runs only).
    weights: str = "pretrained"
    components: str = ""
    # What the pipeline's `latents=` argument takes. "nchw": the (N, C, h, w) latent as the QSL
    # gives it. "flux-packed": 2 x 2 patches packed into (N, h/2 * w/2, 4C) (FLUX.1); the harness
    # keeps (N, C, h, w) and the backend packs.
    latent_layout: str = "nchw"
    max_sequence_length: int = 0  # T5/Qwen prompt length for pipelines that take it; 0 = their default
    pretokenize: bool = False  # the backend tokenizes prompts at QSL load (`preprocess_prompts`)


@dataclass(frozen=True)
class PromptBatch:
    """One batch of work. `latents` is float32, shape (N, C, h, w), one row per prompt.

    `encoded` holds, per sample, what the backend's `preprocess_prompts` made of its prompts when
    the QSL loaded it (token ids, say), outside the timed path; empty when nothing was pre-processed.
    Its contents are the backend's business: the harness only carries them.
    """

    sample_indices: tuple[int, ...]
    prompts: tuple[str, ...]
    negative_prompts: tuple[str, ...]
    latents: np.ndarray
    encoded: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.sample_indices)
        if len(self.prompts) != n or len(self.negative_prompts) != n:
            raise ValueError(
                f"PromptBatch: {n} sample indices but {len(self.prompts)} prompts "
                f"and {len(self.negative_prompts)} negative prompts"
            )
        if self.encoded and len(self.encoded) != n:
            raise ValueError(f"PromptBatch: {n} sample indices but {len(self.encoded)} encoded prompts")
        if self.latents.ndim != 4 or self.latents.shape[0] != n:
            raise ValueError(f"PromptBatch: latents must have shape (N={n}, C, h, w), got {self.latents.shape}")

    def __len__(self) -> int:
        return len(self.sample_indices)


@dataclass(frozen=True)
class ImageBatch:
    """Generated images: uint8, shape (N, H, W, 3), C-contiguous RGB."""

    images: np.ndarray
    # Where the batch's time went (stage -> ns, contiguous stages) and each denoising step's time;
    # empty when the backend does not time stages or timing is off.
    stage_times_ns: dict[str, int] = field(default_factory=dict)
    step_times_ns: tuple[int, ...] = ()

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
    """What every backend implements. Construction must be cheap; `load` does the work.

    A backend class carries its registry name and its options type (`BackendClass`); an instance keeps the
    options it was built with (a frozen dataclass), which worker processes and Ray actors are built from.
    """

    name: str
    options: Any

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


class BackendClass(Protocol):
    """A backend as the registry hands it out: the class itself, with its name, its options type and its
    constructor. A new backend is one module with such a class and one line in backends/registry.py.

        cls = backend_class("fake")
        backend = cls(spec, build_options(cls.Options, values))
    """

    name: str  # the registry name, as in --backend NAME
    Options: type[Any]  # a frozen dataclass: the [backend] section of the configuration

    def __call__(self, model: ModelSpec, options: Any) -> Backend:
        """Construct the backend (cheap: nothing loads until `load`). Raises BackendError for an option
        value it refuses."""
        ...


@runtime_checkable
class PromptPreprocessor(Protocol):
    """Optional: a backend that prepares prompts once, when the QSL loads samples.

    The QSL calls `preprocess_prompts` from LoadGen's `load_samples` (outside the timed path) and
    hands the result back in `PromptBatch.encoded`. Returning None means "nothing to prepare for this
    model" and the batches carry the prompts only. Backends without the method are not affected.
    """

    def preprocess_prompts(self, prompts: Sequence[str], negative_prompts: Sequence[str]) -> list[Any] | None:
        """One object per prompt (same order), or None."""


@dataclass(frozen=True)
class EndpointStats:
    """What a backend that calls a remote service (backends/http.py) saw of it, for the run's summary.

    `splits_ns`: per answered sample of the timed run, its client-side latency ("e2e") and the contiguous
    parts it splits into (server_queue, server_generate, server_encode from the Server-Timing header,
    client_decode, client_other: network, transfer, HTTP). `status_counts`: every request attempt by
    HTTP status, or "timeout" / "connection_error".
    """

    url: str
    api: str
    response_format: str
    concurrency: int
    comparable_with_mlperf_accuracy: bool
    not_comparable_reason: str
    server: dict[str, Any]
    requests: int
    status_counts: dict[str, int]
    retries: int
    max_in_flight: int  # the most requests this client had open at once
    splits_ns: dict[str, tuple[int, ...]]
    first_image_s: float | None  # from load() (the first contact) to the first decoded image
    first_request_s: float | None  # the first request's client-side latency (a cold server's first image)


class BackendError(Exception):
    """A backend could not load or run. The message says what, the value, and what is allowed."""
