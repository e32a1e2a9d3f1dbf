"""Any diffusers text-to-image pipeline, run eagerly in PyTorch.

The pipeline class comes from `ModelSpec.pipeline` and is called the generic way (prompts,
negative prompts, fixed latents, steps, guidance, size), so UNet pipelines (SDXL, SD 1.5) and
transformer pipelines (SD3, FLUX) go through the same code. This is the reference every other
backend is compared against for image parity.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
import transformers

from backends.base import BackendError, ImageBatch, ModelSpec, PromptBatch

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DEVICE_TYPES = ("cpu", "cuda", "mps")


@dataclass(frozen=True)
class DiffusersEagerOptions:
    """Options of the diffusers-eager backend.

    num_threads: torch intra-op threads. -1 (auto) gives torch every core but one on the CPU,
    leaving one to LoadGen's threads (giving torch every core cut throughput 3x under LoadGen),
    and leaves torch's default on other devices; 0 leaves torch's default; N > 0 sets N.
    """

    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "mps"; never falls back to another
    dtype: str = "float32"  # one of _DTYPES
    num_threads: int = -1

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise BackendError(
                f"diffusers-eager: dtype {self.dtype!r} is not supported; choose one of: {', '.join(_DTYPES)}"
            )
        if self.device.split(":", 1)[0] not in _DEVICE_TYPES:
            raise BackendError(
                f"diffusers-eager: device {self.device!r} is not supported; choose one of: cpu, cuda, cuda:N, mps"
            )
        if self.num_threads < -1:
            raise BackendError(
                f"diffusers-eager: num_threads {self.num_threads} is not allowed; "
                "use -1 (auto), 0 (torch's default) or a positive count"
            )


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) floats in [0, 1] -> C-contiguous (N, H, W, 3) uint8.

    The MLPerf SDXL reference rule (text_to_image/coco.py, PostProcessCoco.__call__): the
    pipeline's output_type="pt" images, cast to float32, times 255, rounded (half to even),
    cast to uint8. The clip is a no-op for diffusers' postprocess, which already clamps to
    [0, 1]; it keeps an out-of-range value from wrapping around in the cast.
    """
    array = images.detach().permute(0, 2, 3, 1).float().cpu().numpy()
    if not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise BackendError(
            f"diffusers-eager: the pipeline returned {bad} non-finite pixel values "
            "(NaN or inf); with float16, try bfloat16 or float32"
        )
    array = np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Silence diffusers' and transformers' tqdm bars for the duration, then restore them."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    restore = [
        lib.enable_progress_bar for lib in (diffusers_logging, transformers_logging) if lib.is_progress_bar_enabled()
    ]
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for enable in restore:
            enable()


def _default_cpu_threads() -> int:
    """Every core this process may run on, but one (kept for LoadGen); at least one."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class DiffusersEagerBackend:
    """A diffusers pipeline from a local folder, eager PyTorch, on one explicit device."""

    name = "diffusers-eager"
    Options = DiffusersEagerOptions

    def __init__(self, model: ModelSpec, options: DiffusersEagerOptions | None = None) -> None:
        self.model = model
        self.options = options if options is not None else DiffusersEagerOptions()
        self._pipe: Any = None
        self._device: torch.device | None = None
        self._dtype = _DTYPES[self.options.dtype]
        self._call_params: frozenset[str] = frozenset()
        self._disabled: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------

    def load(self) -> None:
        start_ns = time.perf_counter_ns()
        path = Path(self.model.path)
        if not path.is_dir():
            raise BackendError(
                f"diffusers-eager: model folder {path} does not exist (model {self.model.name!r}); "
                "point the model's path at a local diffusers pipeline folder"
            )
        if not (path / "model_index.json").is_file():
            raise BackendError(
                f"diffusers-eager: {path} has no model_index.json, so it is not a diffusers "
                f"pipeline folder (model {self.model.name!r})"
            )
        device = self._resolve_device()
        pipeline_cls = _diffusers_class(self.model.pipeline, diffusers.DiffusionPipeline, "pipeline")
        self._apply_num_threads(device)

        # What the MLPerf reference turns off: both change the images, neither is the model.
        init_params = inspect.signature(pipeline_cls.__init__).parameters
        extra: dict[str, Any] = {}
        self._disabled = []
        if "add_watermarker" in init_params:
            extra["add_watermarker"] = False
            self._disabled.append("watermarker")
        if "safety_checker" in init_params:
            extra["safety_checker"] = None
            self._disabled.append("safety_checker")

        extra[_dtype_keyword()] = self._dtype
        try:
            with _quiet_progress_bars():
                pipe = pipeline_cls.from_pretrained(str(path), local_files_only=True, **extra)
        except (OSError, ValueError, ImportError) as exc:
            raise BackendError(f"diffusers-eager: could not load {self.model.pipeline} from {path}: {exc}") from exc
        if pipe.dtype != self._dtype:
            raise BackendError(
                f"diffusers-eager: {path} loaded as {pipe.dtype}, but dtype {self.options.dtype!r} "
                f"was asked for (diffusers {diffusers.__version__})"
            )

        if self.model.scheduler:
            scheduler_cls = _diffusers_class(self.model.scheduler, diffusers.SchedulerMixin, "scheduler")
            pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)

        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self._pipe = pipe
        self._device = device
        self._call_params = frozenset(inspect.signature(pipe.__call__).parameters)
        logger.info(
            "load: %s (%s, %s) on %s in %s with %d torch threads, %.2f s",
            self.model.name,
            type(pipe).__name__,
            type(pipe.scheduler).__name__,
            device,
            self.options.dtype,
            torch.get_num_threads(),
            (time.perf_counter_ns() - start_ns) / 1e9,
        )

    def warmup(self, batch: PromptBatch) -> None:
        start_ns = time.perf_counter_ns()
        self.generate(batch)
        logger.info("warm-up: batch of %d in %.2f s", len(batch), (time.perf_counter_ns() - start_ns) / 1e9)

    def generate(self, batch: PromptBatch) -> ImageBatch:
        pipe, device = self._loaded()

        # 1. Inputs: the fixed latents on the device, in the model's dtype. Always a copy: the
        #    QSL's array may be read-only or a broadcast of one shared latent, and must not change.
        host = np.array(batch.latents, dtype=np.float32, order="C", copy=True)
        latents = torch.from_numpy(host).to(device, self._dtype)
        kwargs: dict[str, Any] = {
            "prompt": list(batch.prompts),
            "latents": latents,
            "num_inference_steps": self.model.steps,
            "guidance_scale": self.model.guidance_scale,
            "height": self.model.height,
            "width": self.model.width,
            "output_type": "pt",
            # Unused by deterministic schedulers (Euler); makes stochastic ones repeatable.
            "generator": torch.Generator(device).manual_seed(0),
        }
        if "negative_prompt" in self._call_params:
            kwargs["negative_prompt"] = list(batch.negative_prompts)
        elif any(batch.negative_prompts):
            raise BackendError(
                f"diffusers-eager: {type(pipe).__name__} takes no negative prompt, but the batch "
                "has non-empty negative prompts; use a prompt set without them"
            )

        # 2. Encode, denoise and decode: the whole pipeline.
        _synchronize(device)
        start_ns = time.perf_counter_ns()
        with torch.inference_mode():
            images = pipe(**kwargs).images
        _synchronize(device)
        pipeline_ns = time.perf_counter_ns() - start_ns
        expected = (len(batch), 3, self.model.height, self.model.width)
        if tuple(images.shape) != expected:
            raise BackendError(
                f"diffusers-eager: the pipeline returned images of shape {tuple(images.shape)}, "
                f"expected {expected} (N, 3, height, width); the latents have shape "
                f"{batch.latents.shape}: do they match the model's size and VAE scale factor?"
            )

        # 3. To uint8 NHWC on the host.
        start_ns = time.perf_counter_ns()
        array = to_uint8_nhwc(images)
        convert_ns = time.perf_counter_ns() - start_ns
        return ImageBatch(array, stage_times_ns={"pipeline": pipeline_ns, "to_uint8": convert_ns})

    def describe(self) -> dict[str, Any]:
        pipe = self._pipe
        denoiser = None
        if pipe is not None:
            denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
        return {
            "backend": self.name,
            "options": asdict(self.options),
            "model": self.model.name,
            "model_path": self.model.path,
            "pipeline_class": type(pipe).__name__ if pipe is not None else self.model.pipeline,
            "scheduler_class": (type(pipe.scheduler).__name__ if pipe is not None else self.model.scheduler or None),
            "denoiser_class": type(denoiser).__name__ if denoiser is not None else None,
            "device": str(self._device or self.options.device),
            "dtype": self.options.dtype,
            "num_threads": torch.get_num_threads(),
            "disabled": list(self._disabled),
            "loaded": pipe is not None,
            "diffusers": diffusers.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }

    def close(self) -> None:
        if self._pipe is None:
            return
        self._pipe = None
        gc.collect()
        if self._device is not None and self._device.type == "cuda":
            torch.cuda.empty_cache()
        logger.info("close: released %s", self.model.name)

    # -- helpers ---------------------------------------------------------------------------

    def _loaded(self) -> tuple[Any, torch.device]:
        if self._pipe is None or self._device is None:
            raise BackendError(
                f"diffusers-eager: model {self.model.name!r} is not loaded; call load() first (or it was closed)"
            )
        return self._pipe, self._device

    def _resolve_device(self) -> torch.device:
        requested = self.options.device
        try:
            device = torch.device(requested)
        except RuntimeError as exc:
            raise BackendError(f"diffusers-eager: device {requested!r} is not valid: {exc}") from exc
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise BackendError(
                    f"diffusers-eager: device {requested!r} requested but "
                    f"torch.cuda.is_available() is False (torch {torch.__version__}); "
                    "no silent fallback to the CPU: "
                    'set device = "cpu" to run there'
                )
            count = torch.cuda.device_count()
            if device.index is not None and device.index >= count:
                raise BackendError(
                    f"diffusers-eager: device {requested!r} requested but only {count} CUDA "
                    f"device(s) are visible (cuda:0 to cuda:{count - 1})"
                )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise BackendError(
                f"diffusers-eager: device {requested!r} requested but MPS is not available; "
                "no silent fallback to the CPU"
            )
        return device

    def _apply_num_threads(self, device: torch.device) -> None:
        n = self.options.num_threads
        if n == -1 and device.type == "cpu":
            n = _default_cpu_threads()
        if n > 0:
            torch.set_num_threads(n)


def _diffusers_class(name: str, base: type, kind: str) -> Any:
    """The class `diffusers.<name>`, checked to be a `base`; BackendError naming it if not."""
    from diffusers.utils import DummyObject

    cls = getattr(diffusers, name, None) if name.isidentifier() else None
    if isinstance(cls, DummyObject):
        raise BackendError(
            f"diffusers-eager: the diffusers {kind} class {name!r} needs packages that are not "
            f"installed: {', '.join(cls._backends)}"
        )
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise BackendError(
            f"diffusers-eager: {name!r} is not a diffusers {kind} class in diffusers "
            f"{diffusers.__version__}; use a class name such as "
            + ("'StableDiffusionXLPipeline'" if kind == "pipeline" else "'EulerDiscreteScheduler'")
        )
    return cls


def _dtype_keyword() -> str:
    """`from_pretrained`'s dtype argument: newer diffusers (0.42 here) take `dtype` and deprecate
    `torch_dtype`; older ones know only `torch_dtype`."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
