"""TensorRT engines built from the ONNX export, run in the SDXL loop on an NVIDIA GPU.

NOT RUN YET: these machines have no NVIDIA GPU and TensorRT is not installed here. It is written
against TensorRT's documented Python API (10.x, and 11.x where strong typing is the only mode) and
shares everything before the engines with the onnxruntime backend, which is tested here: the ONNX
export (backends/onnx_family/export.py), the input shapes its profiles use, and the denoising loop
(backends/onnx_family/sdxl_loop.py). Its own tests are marked `tensorrt` and skip without TensorRT and a GPU.

How it works:
- `load()` exports the SDXL components to ONNX in the precision asked for (`fp16`: float16 graphs
  with the VAE kept in float32 as SDXL does; `bf16`; `fp32`). Networks are built strongly typed
  (`NetworkDefinitionCreationFlag.STRONGLY_TYPED`): the precision comes from the ONNX graph's
  types, which is the only way TensorRT 11 takes it (its BuilderFlag.FP16 / BF16 / FP8 are gone).
  `fp8` is refused: it needs FP8 quantize / dequantize nodes in the ONNX (NVIDIA ModelOpt), which
  this export does not make.
- `warmup()` builds (or loads from the cache) one engine per component with one optimization
  profile per batch size in `warmup_batch_sizes` (min = opt = max), then runs each size once.
  Engines are cached under `$HARNESS_CACHE_DIR/tensorrt/<key>.plan`, the key hashing the ONNX
  export's key, the TensorRT version, the GPU and compute capability, the precision, the profiles
  and the builder settings.
- `generate()` pads a batch up to the next built size, selects that profile
  (`set_optimization_profile_async`), and runs each component with `set_input_shape`,
  `set_tensor_address` on torch CUDA tensors and `execute_async_v3` on torch's current stream.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorrt as trt
import torch

from backends.base import BackendError, ImageBatch, ModelSpec, PromptBatch
from backends.batching import padded_size, resize_batch
from backends.diffusers_eager import to_uint8_nhwc
from backends.onnx_family.export import (
    COMPONENTS,
    ExportOptions,
    OnnxModel,
    SDXLFolder,
    check_supported,
    component_rows,
    default_cache_dir,
    ensure_onnx,
    input_shapes,
    latent_size,
    read_sdxl_folder,
)
from backends.onnx_family.sdxl_loop import SDXLLoop
from backends.stage_timer import StageTimer

logger = logging.getLogger(__name__)

NAME = "tensorrt"
PRECISIONS = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
_TRT_TO_TORCH = {
    trt.DataType.FLOAT: torch.float32,
    trt.DataType.HALF: torch.float16,
    trt.DataType.BF16: torch.bfloat16,
    trt.DataType.INT32: torch.int32,
    trt.DataType.INT64: torch.int64,
    trt.DataType.BOOL: torch.bool,
}


@dataclass(frozen=True)
class TensorRTOptions:
    device: str = "cuda"  # "cuda" or "cuda:N"; never anything else
    precision: str = "fp16"  # one of PRECISIONS
    warmup_batch_sizes: tuple[int, ...] = ()  # one profile each; the runner fills in the SUT's sizes
    workspace_gib: float = 0.0  # builder workspace limit; 0 = TensorRT's default (the device memory)
    builder_optimization_level: int = 3  # 0-5: higher builds longer, may run faster
    exporter: str = "torchscript"  # or "dynamo" (backends/onnx_family/export.py)
    opset: int = 18
    stage_timing: bool = True  # per-stage and per-step times from CUDA events

    def __post_init__(self) -> None:
        if self.precision == "fp8":
            raise BackendError(
                f"{NAME}: precision 'fp8' needs an ONNX graph with FP8 quantize/dequantize nodes (NVIDIA "
                "ModelOpt), which this export does not make; choose one of: " + ", ".join(PRECISIONS)
            )
        if self.precision not in PRECISIONS:
            raise BackendError(
                f"{NAME}: precision {self.precision!r} is not supported; choose one of: {', '.join(PRECISIONS)}"
            )
        if self.device.split(":", 1)[0] != "cuda":
            raise BackendError(f"{NAME}: device {self.device!r} is not supported; TensorRT runs on cuda or cuda:N")
        if not 0 <= self.builder_optimization_level <= 5:
            raise BackendError(f"{NAME}: builder_optimization_level {self.builder_optimization_level} must be 0 to 5")
        if self.workspace_gib < 0:
            raise BackendError(f"{NAME}: workspace_gib {self.workspace_gib} must be >= 0")
        if any(b < 1 for b in self.warmup_batch_sizes):
            raise BackendError(f"{NAME}: warmup_batch_sizes {list(self.warmup_batch_sizes)} must all be >= 1")
        ExportOptions(PRECISIONS[self.precision], self.exporter, self.opset).check(NAME)


@dataclass
class _Engine:
    """One component's engine, its execution context, and which profile serves how many rows."""

    engine: Any
    context: Any
    profiles: dict[int, int]  # rows -> optimization profile index
    path: Path
    cache_hit: bool
    build_s: float
    active: int = -1
    outputs: list[str] = field(default_factory=list)


class TensorRTBackend:
    name = NAME
    Options = TensorRTOptions

    def __init__(self, model: ModelSpec, options: TensorRTOptions | None = None) -> None:
        self.model = model
        self.options = options if options is not None else TensorRTOptions()
        check_supported(model, NAME)  # before anything loads: a clear error for other pipelines
        self._device: torch.device | None = None
        self._folder: SDXLFolder | None = None
        self._loop: SDXLLoop | None = None
        self._onnx: OnnxModel | None = None
        self._engines: dict[str, _Engine] = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self._sizes: tuple[int, ...] = ()
        self._logger = trt.Logger(trt.Logger.WARNING)

    # -- lifecycle -------------------------------------------------------------------------

    def load(self) -> None:
        start = time.perf_counter()
        device = self._resolve_device()
        folder = read_sdxl_folder(self.model, NAME)
        loop = SDXLLoop(self.model, folder, device, NAME)
        export = ExportOptions(
            PRECISIONS[self.options.precision], self.options.exporter, self.options.opset, str(device)
        )
        self._onnx = ensure_onnx(self.model, export, folder=folder, seq_lens=loop.seq_lens, who=NAME)
        self._device, self._folder, self._loop = device, folder, loop
        self._dtypes = {name: getattr(torch, self._onnx.dtypes[name]) for name in COMPONENTS}
        logger.info(
            "load: %s as ONNX (%s) for TensorRT %s on %s, %.2f s; engines are built in warm-up",
            self.model.name,
            self.options.precision,
            trt.__version__,
            torch.cuda.get_device_name(device),
            time.perf_counter() - start,
        )

    def warmup(self, batch: PromptBatch) -> None:
        loop, device = self._loaded()
        sizes = tuple(sorted(set(self.options.warmup_batch_sizes or (len(batch),))))
        for name in COMPONENTS:
            rows = sorted({component_rows(name, b, loop.guidance) for b in sizes})
            self._engines[name] = self._engine(name, rows)
        self._sizes = sizes
        for size in sizes:
            start = time.perf_counter()
            self.generate(resize_batch(batch, size))
            logger.info("warm-up: batch of %d in %.2f s", size, time.perf_counter() - start)

    def preprocess_prompts(self, prompts: list[str], negative_prompts: list[str]) -> list[Any] | None:
        if not self.model.pretokenize:
            return None
        from backends import pretokenize

        loop, _ = self._loaded()
        return pretokenize.tokenize(loop, prompts, negative_prompts)

    def generate(self, batch: PromptBatch) -> ImageBatch:
        loop, device = self._loaded()
        if not self._engines:
            raise BackendError(f"{NAME}: generate() before warmup(); warm-up builds the engines")
        n = len(batch)
        size = padded_size(n, self._sizes, NAME)
        if size != n:
            batch = resize_batch(batch, size)
        # CUDA events at the stage boundaries; the host copy in to_uint8 is the batch's one synchronisation.
        timer = StageTimer(self.options.stage_timing, "cuda")
        with torch.inference_mode(), torch.cuda.device(device):
            timer.start("text_encode")
            images = loop(batch, self._run, self._dtypes, timer)
            timer.mark("to_uint8")
            array = to_uint8_nhwc(images[:n])
        stages, steps = timer.finish()
        return ImageBatch(np.ascontiguousarray(array), stage_times_ns=stages, step_times_ns=steps)

    def describe(self) -> dict[str, Any]:
        device = self._device
        return {
            "backend": NAME,
            "options": asdict(self.options),
            "model": self.model.name,
            "model_path": self.model.path,
            "pipeline_class": self.model.pipeline,
            "device": str(device or self.options.device),
            "gpu": torch.cuda.get_device_name(device) if device is not None else None,
            "dtype": self.options.precision,
            "onnx": self._onnx.describe() if self._onnx is not None else None,
            "engines": {
                name: {
                    "file": str(e.path),
                    "cache_hit": e.cache_hit,
                    "build_s": round(e.build_s, 3),
                    "profiles": e.profiles,
                }
                for name, e in self._engines.items()
            },
            "build_s": {
                "onnx_export": round(self._onnx.export_s, 3) if self._onnx else 0.0,
                "engine_build": round(sum(e.build_s for e in self._engines.values()), 3),
            },
            "batch_sizes": list(self._sizes),
            "loaded": self._loop is not None,
            "tensorrt": trt.__version__,
            "torch": torch.__version__,
        }

    def close(self) -> None:
        if self._loop is None and not self._engines:
            return
        self._engines = {}
        self._loop = None
        gc.collect()
        if self._device is not None:
            torch.cuda.empty_cache()
        logger.info("close: released %s", self.model.name)

    # -- engines ---------------------------------------------------------------------------

    def _engine(self, component: str, rows: list[int]) -> _Engine:
        """The engine of `component` with one profile per entry of `rows`, from the cache or built now."""
        onnx_model, folder, device = self._onnx, self._folder, self._device
        assert onnx_model is not None and folder is not None and device is not None
        seq_lens = self._loaded()[0].seq_lens
        major, minor = torch.cuda.get_device_capability(device)
        key_data = {
            "onnx": onnx_model.key,
            "component": component,
            "tensorrt": trt.__version__,
            "gpu": torch.cuda.get_device_name(device),
            "sm": f"{major}.{minor}",
            "precision": self.options.precision,
            "rows": rows,
            "level": self.options.builder_optimization_level,
            "workspace_gib": self.options.workspace_gib,
        }
        key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
        path = default_cache_dir() / "tensorrt" / f"{component}-{key}.plan"
        start = time.perf_counter()
        cache_hit = path.is_file()
        if cache_hit:
            plan = path.read_bytes()
        else:
            shapes = {r: input_shapes(component, r, folder, seq_lens, latent_size(self.model, folder)) for r in rows}
            plan = self._build(onnx_model.files[component], shapes, component)
            _write_atomic(path, plan)
        build_s = time.perf_counter() - start if not cache_hit else 0.0
        engine = trt.Runtime(self._logger).deserialize_cuda_engine(plan)
        if engine is None:
            raise BackendError(f"{NAME}: TensorRT could not load the engine {path}; delete it to rebuild")
        context = engine.create_execution_context()
        outputs = [
            engine.get_tensor_name(i)
            for i in range(engine.num_io_tensors)
            if engine.get_tensor_mode(engine.get_tensor_name(i)) == trt.TensorIOMode.OUTPUT
        ]
        logger.info(
            "engine: %s with profiles for %s rows, %s (%.1f s)",
            component,
            rows,
            "from the cache" if cache_hit else "built",
            build_s,
        )
        return _Engine(engine, context, {r: i for i, r in enumerate(rows)}, path, cache_hit, build_s, outputs=outputs)

    def _build(self, onnx_path: Path, shapes: dict[int, dict[str, tuple[int, ...]]], component: str) -> bytes:
        builder = trt.Builder(self._logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"{NAME}: TensorRT could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.builder_optimization_level = self.options.builder_optimization_level
        if self.options.workspace_gib:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(self.options.workspace_gib * 2**30))
        for rows, inputs in shapes.items():
            profile = builder.create_optimization_profile()
            for name, shape in inputs.items():
                profile.set_shape(name, shape, shape, shape)
            config.add_optimization_profile(profile)
            logger.debug("engine: %s profile for %d rows: %s", component, rows, inputs)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError(f"{NAME}: TensorRT could not build an engine for {onnx_path} (see its log above)")
        return bytes(plan)

    def _run(self, component: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        e = self._engines[component]
        device = self._device
        rows = next(iter(inputs.values())).shape[0]
        profile = e.profiles.get(rows)
        if profile is None:
            raise BackendError(f"{NAME}: {component} has no profile for {rows} rows (built: {sorted(e.profiles)})")
        stream = torch.cuda.current_stream(device).cuda_stream
        if e.active != profile:
            if not e.context.set_optimization_profile_async(profile, stream):
                raise BackendError(f"{NAME}: could not select profile {profile} of {component}")
            e.active = profile
        keep = []
        for name, tensor in inputs.items():
            t = tensor.to(device=device, dtype=_TRT_TO_TORCH[e.engine.get_tensor_dtype(name)]).contiguous()
            keep.append(t)
            if not e.context.set_input_shape(name, tuple(t.shape)):
                raise BackendError(f"{NAME}: {component} refused input {name} of shape {tuple(t.shape)}")
            e.context.set_tensor_address(name, t.data_ptr())
        outputs: dict[str, torch.Tensor] = {}
        for name in e.outputs:
            shape = tuple(e.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=_TRT_TO_TORCH[e.engine.get_tensor_dtype(name)], device=device)
            e.context.set_tensor_address(name, out.data_ptr())
            outputs[name] = out
        if not e.context.execute_async_v3(stream):
            raise BackendError(f"{NAME}: TensorRT failed to run {component} on {rows} rows")
        del keep  # the inputs stay alive on torch's stream until the kernels that read them are done
        return outputs

    # -- helpers ---------------------------------------------------------------------------

    def _loaded(self) -> tuple[SDXLLoop, torch.device]:
        if self._loop is None or self._device is None:
            raise BackendError(f"{NAME}: model {self.model.name!r} is not loaded; call load() first (or it was closed)")
        return self._loop, self._device

    def _resolve_device(self) -> torch.device:
        if not torch.cuda.is_available():
            raise BackendError(
                f"{NAME}: device {self.options.device!r} requested but torch.cuda.is_available() is False; "
                "TensorRT needs an NVIDIA GPU (no fallback)"
            )
        device = torch.device(self.options.device)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise BackendError(f"{NAME}: device {self.options.device!r} requested but only {count} CUDA device(s)")
        return device


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
