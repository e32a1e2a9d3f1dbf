"""SDXL-family pipelines exported to ONNX and run with ONNX Runtime.

`load()` exports the two text encoders, the UNet and the VAE decoder (backends/onnx_family/export.py;
cached, so only the first run pays) and opens one ONNX Runtime session per component with the
execution providers of `backend.providers`, in that order. The denoising loop is diffusers' SDXL
loop (backends/onnx_family/sdxl_loop.py) with the same scheduler and the same fixed latents as diffusers-eager.

Supported pipelines: StableDiffusionXLPipeline only (the tiny model and SDXL base 1.0). Providers
are never swapped silently: one that is not installed is an error, and so is a session that ONNX
Runtime opened on another provider than the first one asked for. What has run: the CPU provider,
here. The CUDA and TensorRT providers are passed through as asked but have not been run.

    python -m harness --backend onnxruntime --scenario Offline
    python -m harness --backend onnxruntime --set 'backend.providers=["CUDAExecutionProvider"]' ...
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import onnxruntime as ort
import torch

from backends.base import BackendError, ImageBatch, ModelSpec, PromptBatch
from backends.batching import resize_batch
from backends.diffusers_eager import to_uint8_nhwc
from backends.onnx_family.export import (
    COMPONENTS,
    ExportOptions,
    OnnxModel,
    check_supported,
    ensure_onnx,
    read_sdxl_folder,
)
from backends.onnx_family.sdxl_loop import SDXLLoop
from backends.stage_timer import StageTimer

logger = logging.getLogger(__name__)

NAME = "onnxruntime"
_OPT_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_NUMPY_OK = ("float32", "float16")  # dtypes ONNX Runtime's Python API takes as NumPy arrays


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """Options of the onnxruntime backend.

    num_threads: ONNX Runtime intra-op threads (and torch's, for the scheduler arithmetic). -1
    gives every core but one, leaving one to LoadGen, as diffusers-eager does; 0 leaves the
    libraries' defaults; N > 0 sets N.
    warmup_batch_sizes: batch sizes run once in warm-up (the runner fills in those the SUT sends).
    """

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    num_threads: int = -1
    graph_optimization_level: str = "all"  # one of _OPT_LEVELS
    dtype: str = "float32"  # of the exported graphs; float16 only with a GPU provider
    exporter: str = "torchscript"  # or "dynamo" (backends/onnx_family/export.py)
    opset: int = 18
    warmup_batch_sizes: tuple[int, ...] = ()
    stage_timing: bool = True  # per-stage and per-step times (perf_counter_ns: the CPU provider's clock)

    def __post_init__(self) -> None:
        if not self.providers:
            raise BackendError(f"{NAME}: providers is empty; name at least one, e.g. ['CPUExecutionProvider']")
        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise BackendError(
                f"{NAME}: execution provider(s) {', '.join(missing)} not available in onnxruntime "
                f"{ort.__version__}; available: {', '.join(available)}"
            )
        if self.graph_optimization_level not in _OPT_LEVELS:
            raise BackendError(
                f"{NAME}: graph_optimization_level {self.graph_optimization_level!r} is not supported; "
                f"choose one of: {', '.join(_OPT_LEVELS)}"
            )
        if self.dtype not in _NUMPY_OK:
            raise BackendError(f"{NAME}: dtype {self.dtype!r} is not supported; choose one of: {', '.join(_NUMPY_OK)}")
        if self.dtype == "float16" and self.providers[0] == "CPUExecutionProvider":
            raise BackendError(
                f"{NAME}: dtype 'float16' with the CPUExecutionProvider is not supported (it lacks float16 "
                "kernels for these graphs); use float32 on the CPU"
            )
        if self.num_threads < -1:
            raise BackendError(
                f"{NAME}: num_threads {self.num_threads} is not allowed; use -1 (auto), 0 (default) or a positive count"
            )
        if any(b < 1 for b in self.warmup_batch_sizes):
            raise BackendError(f"{NAME}: warmup_batch_sizes {list(self.warmup_batch_sizes)} must all be >= 1")
        ExportOptions(self.dtype, self.exporter, self.opset).check(NAME)


class OnnxRuntimeBackend:
    """Exported SDXL components in ONNX Runtime sessions, driven by the SDXL loop in torch."""

    name = NAME
    Options = OnnxRuntimeOptions

    def __init__(self, model: ModelSpec, options: OnnxRuntimeOptions | None = None) -> None:
        self.model = model
        self.options = options if options is not None else OnnxRuntimeOptions()
        check_supported(model, NAME)  # before anything loads: a clear error for other pipelines
        self._loop: SDXLLoop | None = None
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._onnx: OnnxModel | None = None
        self._dtypes: dict[str, torch.dtype] = {}
        self._threads = 0
        self._timings_s: dict[str, float] = {}
        self._warmup_s: dict[int, float] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def load(self) -> None:
        start = time.perf_counter()
        folder = read_sdxl_folder(self.model, NAME)
        self._threads = self._apply_num_threads()
        loop = SDXLLoop(self.model, folder, torch.device("cpu"), NAME)
        export = ExportOptions(self.options.dtype, self.options.exporter, self.options.opset)
        onnx_model = ensure_onnx(self.model, export, folder=folder, seq_lens=loop.seq_lens, who=NAME)

        session_start = time.perf_counter()
        sessions = {name: self._session(onnx_model, name) for name in COMPONENTS}
        session_s = time.perf_counter() - session_start

        self._loop, self._sessions, self._onnx = loop, sessions, onnx_model
        self._dtypes = {name: getattr(torch, onnx_model.dtypes[name]) for name in COMPONENTS}
        self._timings_s = {"onnx_export": round(onnx_model.export_s, 3), "session_create": round(session_s, 3)}
        logger.info(
            "load: %s as ONNX (%s, %s) on %s with %s threads: export %s, sessions %.2f s, total %.2f s",
            self.model.name,
            self.options.dtype,
            self.options.exporter,
            ", ".join(self.options.providers),
            self._threads or "default",
            "cached" if onnx_model.cache_hit else f"{onnx_model.export_s:.2f} s",
            session_s,
            time.perf_counter() - start,
        )

    def warmup(self, batch: PromptBatch) -> None:
        for size in self.options.warmup_batch_sizes or (len(batch),):
            start = time.perf_counter()
            self.generate(resize_batch(batch, size))
            self._warmup_s[size] = round(time.perf_counter() - start, 3)
            logger.info("warm-up: batch of %d in %.2f s", size, self._warmup_s[size])

    def preprocess_prompts(self, prompts: Sequence[str], negative_prompts: Sequence[str]) -> list[Any] | None:
        """Token ids made when the QSL loads samples, for models with `pretokenize` (as diffusers-eager)."""
        if not self.model.pretokenize:
            return None
        from backends import pretokenize

        return pretokenize.tokenize(self._loaded(), prompts, negative_prompts)

    def generate(self, batch: PromptBatch) -> ImageBatch:
        loop = self._loaded()
        timer = StageTimer(self.options.stage_timing)
        timer.start("text_encode")
        with torch.inference_mode():
            images = loop(batch, self._run, self._dtypes, timer)
        expected = (len(batch), 3, self.model.height, self.model.width)
        if tuple(images.shape) != expected:
            raise BackendError(f"{NAME}: the VAE decoder returned {tuple(images.shape)}, expected {expected}")
        timer.mark("to_uint8")
        array = to_uint8_nhwc(images)
        stages, steps = timer.finish()
        return ImageBatch(array, stage_times_ns=stages, step_times_ns=steps)

    def describe(self) -> dict[str, Any]:
        sessions = self._sessions
        return {
            "backend": NAME,
            "options": asdict(self.options),
            "model": self.model.name,
            "model_path": self.model.path,
            "pipeline_class": self.model.pipeline,
            "scheduler_class": type(self._loop.scheduler).__name__ if self._loop is not None else None,
            "device": "cpu" if self.options.providers[0] == "CPUExecutionProvider" else self.options.providers[0],
            "dtype": self.options.dtype,
            "num_threads": self._threads or None,
            "providers": {name: s.get_providers() for name, s in sessions.items()},
            "onnx": self._onnx.describe() if self._onnx is not None else None,
            "build_s": dict(self._timings_s),
            "warmup_s": {str(k): v for k, v in self._warmup_s.items()},
            "loaded": bool(sessions),
            "pretokenize": self.model.pretokenize,
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
        }

    def close(self) -> None:
        if not self._sessions and self._loop is None:
            return
        self._sessions = {}
        self._loop = None
        gc.collect()
        logger.info("close: released %s", self.model.name)

    # -- helpers ---------------------------------------------------------------------------

    def _loaded(self) -> SDXLLoop:
        if self._loop is None or not self._sessions:
            raise BackendError(f"{NAME}: model {self.model.name!r} is not loaded; call load() first (or it was closed)")
        return self._loop

    def _run(self, component: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        session = self._sessions[component]
        feed = {name: t.detach().cpu().contiguous().numpy() for name, t in inputs.items()}
        outputs = session.run(None, feed)
        names = [o.name for o in session.get_outputs()]
        return {name: torch.from_numpy(value) for name, value in zip(names, outputs, strict=True)}

    def _session(self, onnx_model: OnnxModel, component: str) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.graph_optimization_level = _OPT_LEVELS[self.options.graph_optimization_level]
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3  # errors only; ORT's warnings go to stderr otherwise
        if self._threads:
            so.intra_op_num_threads = self._threads
            so.inter_op_num_threads = 1
        path = onnx_model.files[component]
        try:
            session = ort.InferenceSession(str(path), so, providers=list(self.options.providers))
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise BackendError(f"{NAME}: could not open {path} in ONNX Runtime: {type(exc).__name__}: {exc}") from exc
        wanted = self.options.providers[0]
        if session.get_providers()[0] != wanted:
            raise BackendError(
                f"{NAME}: ONNX Runtime opened {component} on {session.get_providers()[0]}, not on {wanted} "
                "as asked (no silent fallback); check that provider's libraries (CUDA, cuDNN, TensorRT)"
            )
        return session

    def _apply_num_threads(self) -> int:
        n = self.options.num_threads
        if n == -1:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            n = max(1, cores - 1)
        if n > 0:
            torch.set_num_threads(n)
        return n
