"""Any diffusers text-to-image pipeline, run eagerly in PyTorch.

The pipeline class comes from `ModelSpec.pipeline` and is called the generic way (prompts,
negative prompts, fixed latents, steps, guidance, size), so UNet pipelines (SD 1.x/2.x, SDXL) and
transformer pipelines with flow-matching schedulers (SD3.5, FLUX.1, FLUX.2) go through the same code;
the denoiser is whichever of `transformer` or `unet` the pipeline has. This is the reference every
other backend is compared against for image parity.

Weights come from a local diffusers folder (`ModelSpec.path`, loaded with `local_files_only`), or,
with `ModelSpec.weights == "random"`, the full-size architecture is built on the device from the
published component configs (backends/models/random_weights.py). SDXL-shaped pipelines can take prompts
pre-tokenized at QSL load (`preprocess_prompts`, backends/pretokenize.py), as the MLPerf reference does.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
import transformers

from backends import pretokenize
from backends.base import BackendError, ImageBatch, ModelSpec, PromptBatch
from backends.cpu_bf16 import BF16_SLOWDOWN_MATMUL, cpu_bf16_is_fast
from backends.quantize import check_quantize, quantize_denoiser, torchao_version
from backends.stage_timer import StageTimer

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DEVICE_TYPES = ("cpu", "cuda", "mps")
_LATENT_LAYOUTS = ("nchw", "flux-packed")
# What the harness turns off, as the MLPerf reference does: (what, pipeline argument, value).
_DISABLED_ARGS = (("watermarker", "add_watermarker", False), ("safety_checker", "safety_checker", None))
_DISABLED = tuple((what, arg) for what, arg, _ in _DISABLED_ARGS)
# Weights drawn for model.weights = "random": fixed, so two random-weight runs run the same model.
RANDOM_WEIGHTS_SEED = 0


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
    # Time text encoding, each denoising step, the VAE decode and the uint8 conversion (CUDA events
    # on a GPU, read after the batch's own final synchronisation; no extra synchronisation).
    stage_timing: bool = True
    # Decode the batch's latents one image at a time (the VAE's enable_slicing()): the decode's peak
    # memory stops growing with the batch, so larger batches fit, with the same images. Off: the whole
    # batch in one decode, diffusers' default.
    vae_slicing: bool = False
    # bfloat16 on a CPU without fast bfloat16 kernels is refused before anything loads (it runs tens
    # of times slower than float32); true runs it anyway, with a warning.
    allow_slow_bf16: bool = False
    # The denoiser's linear layers quantized through torchao (backends/quantize.py): none,
    # float8_dynamic, float8_weight (CUDA, compute capability 8.9+), int8_dynamic, int8_weight.
    quantize: str = "none"

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise BackendError(
                f"diffusers-eager: dtype {self.dtype!r} is not supported; choose one of: {', '.join(_DTYPES)}"
            )
        if self.device.split(":", 1)[0] not in _DEVICE_TYPES:
            raise BackendError(
                f"diffusers-eager: device {self.device!r} is not supported; choose one of: cpu, cuda, cuda:N, mps"
            )
        if self.dtype == "bfloat16" and self.device.split(":", 1)[0] == "cpu":
            _check_cpu_bf16(self.allow_slow_bf16)
        if self.num_threads < -1:
            raise BackendError(
                f"diffusers-eager: num_threads {self.num_threads} is not allowed; "
                "use -1 (auto), 0 (torch's default) or a positive count"
            )
        check_quantize(self.quantize, self.device, "diffusers-eager")


def _check_cpu_bf16(allow_slow: bool) -> None:
    fast, how = cpu_bf16_is_fast()
    if fast:
        return
    problem = (
        f"diffusers-eager: dtype 'bfloat16' on this CPU has no fast bfloat16 kernels ({how}); on such a CPU "
        f"a matmul ran {BF16_SLOWDOWN_MATMUL} slower than in float32 (measured: python -m tools.bf16_cost)"
    )
    if not allow_slow:
        raise BackendError(
            f"{problem}; use backend.dtype=float32, or backend.allow_slow_bf16=true to run bfloat16 anyway"
        )
    logger.warning("%s; running it anyway (backend.allow_slow_bf16 = true)", problem)


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) floats in [0, 1] -> C-contiguous (N, H, W, 3) uint8.

    The MLPerf SDXL reference rule (text_to_image/coco.py, PostProcessCoco.__call__): the
    pipeline's output_type="pt" images, cast to float32, times 255, rounded (half to even),
    cast to uint8. The clip is a no-op for diffusers' postprocess, which already clamps to
    [0, 1]; it keeps an out-of-range value from wrapping around in the cast.

    Computed where the images are (the GPU), and only the uint8 result crosses to the host: the
    reference's float32 copy and numpy arithmetic took about 1 s of every 32-image 1024 x 1024 batch on
    an H100 (benchmarks/results/issue5_h100_2026-11-26). torch.round also rounds half to even, and one
    float32 multiply is the same IEEE operation in both, so the bytes are the reference's.
    """
    with torch.no_grad():
        pixels = images.detach()
        finite = torch.isfinite(pixels)
        if not bool(finite.all()):
            bad = int(finite.numel() - finite.sum())
            raise BackendError(
                f"diffusers-eager: the pipeline returned {bad} non-finite pixel values "
                "(NaN or inf); with float16, try bfloat16 or float32"
            )
        del finite
        scaled = (pixels.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        return scaled.permute(0, 2, 3, 1).contiguous().cpu().numpy()


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


def _enable_vae_slicing(pipe: Any) -> None:
    vae = getattr(pipe, "vae", None)
    try:
        vae.enable_slicing()  # type: ignore[union-attr]
    except (AttributeError, NotImplementedError):
        raise BackendError(
            f"diffusers-eager: vae_slicing = true, but {type(pipe).__name__}'s VAE "
            f"({type(vae).__name__}) cannot decode in slices; set backend.vae_slicing = false"
        ) from None


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
        self._denoiser_name = ""
        self._quantized_layers = 0
        self._warned_negative = False
        if model.weights not in ("pretrained", "random"):
            raise BackendError(
                f"diffusers-eager: model weights {model.weights!r} is not supported; choose pretrained or random"
            )
        if model.latent_layout not in _LATENT_LAYOUTS:
            raise BackendError(
                f"diffusers-eager: latent layout {model.latent_layout!r} is not supported; "
                f"choose one of: {', '.join(_LATENT_LAYOUTS)}"
            )

    # -- lifecycle -------------------------------------------------------------------------

    def load(self) -> None:
        start_ns = time.perf_counter_ns()
        device = self._resolve_device()
        pipeline_cls = _diffusers_class(self.model.pipeline, diffusers.DiffusionPipeline, "pipeline")
        self._apply_num_threads(device)
        # What the MLPerf reference turns off: both change the images, neither is the model.
        init_params = inspect.signature(pipeline_cls.__init__).parameters
        self._disabled = [what for what, arg in _DISABLED if arg in init_params]
        if self.model.weights == "random":
            pipe = self._build_random(device)
        else:
            pipe = self._from_folder(pipeline_cls)

        if self.model.scheduler:
            scheduler_cls = _diffusers_class(self.model.scheduler, diffusers.SchedulerMixin, "scheduler")
            pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)

        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        if self.options.vae_slicing:
            _enable_vae_slicing(pipe)
        self._denoiser_name = _denoiser_name(pipe)
        self._before_quantize(pipe)
        self._quantized_layers = quantize_denoiser(getattr(pipe, self._denoiser_name), self.options.quantize)
        if self.model.pretokenize:
            reason = pretokenize.unsupported_reason(pipe)
            if reason:
                raise BackendError(
                    f"diffusers-eager: model {self.model.name!r} asks for pre-tokenized prompts "
                    f"(pretokenize = true), but {type(pipe).__name__} cannot take them: {reason}; "
                    "set model.pretokenize = false"
                )
        self._pipe = pipe
        self._device = device
        self._call_params = frozenset(inspect.signature(pipe.__call__).parameters)
        logger.info(
            "load: %s (%s, %s %s, %s) on %s in %s with %d torch threads%s, %.2f s",
            self.model.name,
            type(pipe).__name__,
            self._denoiser_name,
            type(getattr(pipe, self._denoiser_name)).__name__,
            type(pipe.scheduler).__name__,
            device,
            self.options.dtype,
            torch.get_num_threads(),
            ", RANDOM WEIGHTS" if self.model.weights == "random" else "",
            (time.perf_counter_ns() - start_ns) / 1e9,
        )

    def _before_quantize(self, pipe: Any) -> None:
        """Changes to the modules' structure that must come before quantization (quantized weights
        cannot be concatenated or re-laid out): none here; torch-compile fuses QKV projections."""

    def _from_folder(self, pipeline_cls: Any) -> Any:
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
        extra: dict[str, Any] = {arg: value for what, arg, value in _DISABLED_ARGS if what in self._disabled}
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
        return pipe

    def _build_random(self, device: torch.device) -> Any:
        """The full-size architecture from the published configs, random weights, built on `device`."""
        from backends.models.random_weights import build_from_folder

        if not self.model.components or not Path(self.model.components).is_dir():
            raise BackendError(
                f"diffusers-eager: random weights need the model's published component configs, but "
                f"components folder {self.model.components!r} does not exist (model {self.model.name!r})"
            )
        with _quiet_progress_bars():
            pipe = build_from_folder(
                self.model.pipeline, self.model.components, device=device, dtype=self._dtype, seed=RANDOM_WEIGHTS_SEED
            )
        return pipe  # build_pipeline leaves out the watermarker and the safety checker

    def warmup(self, batch: PromptBatch) -> None:
        start_ns = time.perf_counter_ns()
        self.generate(batch)
        logger.info("warm-up: batch of %d in %.2f s", len(batch), (time.perf_counter_ns() - start_ns) / 1e9)

    def preprocess_prompts(self, prompts: Sequence[str], negative_prompts: Sequence[str]) -> list[Any] | None:
        """Token ids of each prompt and negative prompt, made when the QSL loads samples (outside
        the timed path), for models with `pretokenize`; None for the others."""
        if not self.model.pretokenize:
            return None
        pipe, _ = self._loaded()
        return pretokenize.tokenize(pipe, prompts, negative_prompts)

    def generate(self, batch: PromptBatch) -> ImageBatch:
        pipe, device = self._loaded()

        # 1. Inputs: the fixed latents on the device, in the model's dtype, in the layout the
        #    pipeline's `latents=` takes. Always a copy: the QSL's array may be read-only or a
        #    broadcast of one shared latent, and must not change. The pipeline scales them by its
        #    scheduler's init_noise_sigma, exactly as the MLPerf reference passes them.
        self._check_latents(pipe, batch.latents)
        host = np.array(batch.latents, dtype=np.float32, order="C", copy=True)
        latents = torch.from_numpy(host).to(device, self._dtype)
        if self.model.latent_layout == "flux-packed":
            latents = pack_latents_2x2(latents)
        kwargs: dict[str, Any] = {
            "latents": latents,
            "num_inference_steps": self.model.steps,
            "guidance_scale": self.model.guidance_scale,
            "height": self.model.height,
            "width": self.model.width,
            "output_type": "pt",
            # Unused by deterministic schedulers (Euler); makes stochastic ones repeatable.
            "generator": torch.Generator(device).manual_seed(0),
        }
        if self.model.max_sequence_length and "max_sequence_length" in self._call_params:
            kwargs["max_sequence_length"] = self.model.max_sequence_length
        encoded = batch.encoded
        if self.model.pretokenize and not encoded:
            # Correct, but the tokenizers now run inside the timed call.
            logger.debug("pretokenize: a batch of %d came without token ids; tokenizing it now", len(batch))
            encoded = tuple(pretokenize.tokenize(pipe, batch.prompts, batch.negative_prompts))
        if not encoded:
            kwargs["prompt"] = list(batch.prompts)
            if "negative_prompt" in self._call_params:
                kwargs["negative_prompt"] = list(batch.negative_prompts)
            elif any(batch.negative_prompts) and not self._warned_negative:
                # Distilled models without CFG (FLUX.2-klein) have no use for one; the prompt set may
                # still carry them (a pack's per-prompt negatives). Said once, and in the manifest.
                self._warned_negative = True
                logger.warning(
                    "%s takes no negative prompt: the negative prompts in this prompt set are ignored",
                    type(pipe).__name__,
                )

        # 2. Encode, denoise and decode: the whole pipeline (from token ids when pre-tokenized).
        timer = StageTimer(self.options.stage_timing, device.type)
        timer.start("text_encode")
        with torch.inference_mode(), _timed_stages(pipe, timer, kwargs, self._call_params):
            if encoded:
                kwargs.update(pretokenize.encode(pipe, encoded, device, self._uses_guidance(pipe)))
                timer.mark("denoise")
            images = pipe(**kwargs).images
        expected = (len(batch), 3, self.model.height, self.model.width)
        if tuple(images.shape) != expected:
            raise BackendError(
                f"diffusers-eager: the pipeline returned images of shape {tuple(images.shape)}, "
                f"expected {expected} (N, 3, height, width); the latents have shape "
                f"{batch.latents.shape}: do they match the model's size and VAE scale factor?"
            )

        # 3. To uint8 NHWC on the host (this copy is the batch's one synchronisation).
        timer.mark("to_uint8")
        array = to_uint8_nhwc(images)
        stages, steps = timer.finish()
        return ImageBatch(array, stage_times_ns=stages, step_times_ns=steps)

    def describe(self) -> dict[str, Any]:
        pipe = self._pipe
        denoiser = getattr(pipe, self._denoiser_name) if pipe is not None and self._denoiser_name else None
        return {
            "backend": self.name,
            "options": asdict(self.options),
            "model": self.model.name,
            "model_path": self.model.path,
            "weights": self.model.weights,
            "weights_seed": RANDOM_WEIGHTS_SEED if self.model.weights == "random" else None,
            "components": self.model.components or None,
            "pipeline_class": type(pipe).__name__ if pipe is not None else self.model.pipeline,
            "scheduler_class": (type(pipe.scheduler).__name__ if pipe is not None else self.model.scheduler or None),
            "denoiser": self._denoiser_name or None,
            "denoiser_class": type(denoiser).__name__ if denoiser is not None else None,
            "latent_layout": self.model.latent_layout,
            "takes_negative_prompt": ("negative_prompt" in self._call_params) if pipe is not None else None,
            "pretokenize": self.model.pretokenize,
            "device": str(self._device or self.options.device),
            "dtype": self.options.dtype,
            "quantize": self.options.quantize,
            "quantized_linear_layers": self._quantized_layers,
            "torchao": torchao_version() if self.options.quantize != "none" else None,
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

    def _check_latents(self, pipe: Any, latents: np.ndarray) -> None:
        """The latent channels must be what the denoiser takes (times 4 when packed)."""
        in_channels = getattr(getattr(pipe, self._denoiser_name).config, "in_channels", None)
        per_channel = 4 if self.model.latent_layout == "flux-packed" else 1
        if in_channels is not None and latents.shape[1] * per_channel != in_channels:
            raise BackendError(
                f"diffusers-eager: latents of shape {latents.shape} ({self.model.latent_layout}) do not fit "
                f"{type(pipe).__name__}, whose {self._denoiser_name} takes {in_channels} input channels; "
                "check model.latent_channels and model.latent_layout"
            )

    def _uses_guidance(self, pipe: Any) -> bool:
        """Whether the pipeline runs classifier-free guidance (and so needs negative embeddings)."""
        denoiser = getattr(pipe, self._denoiser_name)
        return self.model.guidance_scale > 1 and getattr(denoiser.config, "time_cond_proj_dim", None) is None

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


def pack_latents_2x2(latents: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, h/2 * w/2, 4C): each 2 x 2 patch becomes one token, channel-major within
    the patch, exactly as FluxPipeline._pack_latents packs the noise it draws itself."""
    n, c, h, w = latents.shape
    if h % 2 or w % 2:
        raise BackendError(f"diffusers-eager: packed latents need an even height and width, got {h} x {w}")
    patches = latents.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(n, (h // 2) * (w // 2), c * 4)


def _denoiser_name(pipe: Any) -> str:
    """`transformer` or `unet`: whichever denoiser the pipeline has."""
    for name in ("transformer", "unet"):
        if getattr(pipe, name, None) is not None:
            return name
    raise BackendError(
        f"diffusers-eager: {type(pipe).__name__} has neither a transformer nor a unet; it is not a "
        "text-to-image diffusion pipeline this backend can run"
    )


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


@contextlib.contextmanager
def _timed_stages(pipe: Any, timer: StageTimer, kwargs: dict[str, Any], call_params: frozenset[str]) -> Iterator[None]:
    """Marks the stage boundaries inside a diffusers pipeline call, without touching its code:
    the end of `encode_prompt` starts "denoise", each step's end is a step, the last step's end
    starts "vae_decode". Nothing is installed when nobody listens (timing and ranges off)."""
    if not timer.active:
        yield
        return
    original = pipe.encode_prompt if hasattr(pipe, "encode_prompt") else None

    def encode_prompt(*args: Any, **kw: Any) -> Any:
        out = original(*args, **kw)  # type: ignore[misc]
        timer.mark("denoise")
        return out

    def on_step_end(p: Any, i: int, t: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        timer.step()
        if i == getattr(p, "_num_timesteps", -1) - 1:
            timer.mark("vae_decode")
        return callback_kwargs

    if original is not None:
        pipe.encode_prompt = encode_prompt  # an instance attribute shadows the method for this call
    if "callback_on_step_end" in call_params:
        kwargs["callback_on_step_end"] = on_step_end
    try:
        yield
    finally:
        if original is not None:
            del pipe.encode_prompt
        kwargs.pop("callback_on_step_end", None)
