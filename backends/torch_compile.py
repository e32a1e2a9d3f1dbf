"""diffusers-eager with torch.compile: the denoiser compiled, and by option the VAE decoder and the
text encoders.

Options (`--set backend.KEY=VALUE`): `mode` (default, reduce-overhead = CUDA graphs, max-autotune,
max-autotune-no-cudagraphs), `fullgraph`, `dynamic`, `regional` (compile only the repeated blocks,
the classes in the model's `_repeated_blocks` or in `regional_blocks`: much shorter compiles),
`compile_vae`, `compile_text_encoders`, `freezing` (inductor folds the weights into the graph: CPU
inference), `compile_backend` (inductor; aot_eager and eager only trace, for debugging), and
`warmup_batch_sizes`.

The GPU recipe of the fastest open diffusion stacks, each an option recorded in the manifest:
`fuse_qkv` (one projection for query, key and value in every attention block), `channels_last` (the
denoiser's and VAE's convolutions in NHWC), `sdpa_backend` (auto, flash, cudnn, efficient, math: the
scaled-dot-product attention kernel, fixed for warm-up and timed calls alike),
`coordinate_descent_tuning` and `epilogue_fusion` (inductor), `compile_vae`, mode
`max-autotune-no-cudagraphs` or `reduce-overhead` (CUDA graphs per batch size), and `cache_dir` (the
inductor cache: FX graphs and autotuning results, so a repeat run on the same machine compiles in
seconds; the manifest records its hits and misses). `quantize` (diffusers-eager's option,
backends/quantize.py) composes with all of them.

Warm-up compiles every batch size in `warmup_batch_sizes`, which the runner fills in with the sizes
the SUT sends (SingleStream 1, Offline `sut.batch_size`, Server 1 to `sut.max_batch_size`; set it
to e.g. [1, 2, 4, 8] to compile fewer). Each size runs twice: the first call compiles, and its time
over the second is the compile time reported for that size; the second must not compile again.
After warm-up `generate` runs under `torch.compiler.set_stance("fail_on_recompile")`: a batch of a
size that was not compiled is padded up to the next compiled one (extra rows dropped), and anything
that would still compile inside a timed run raises instead of stalling it.

Coupling with backends/diffusers_eager.py (owned elsewhere): this class subclasses
DiffusersEagerBackend and uses its public methods (load, generate, describe, close,
preprocess_prompts) plus `_loaded()` for the pipeline and device; TorchCompileOptions subclasses
DiffusersEagerOptions, whose fields the eager backend reads from `self.options`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backends.base import BackendError, ImageBatch, ModelSpec, PromptBatch
from backends.batching import padded_size, resize_batch
from backends.diffusers_eager import DiffusersEagerBackend, DiffusersEagerOptions

logger = logging.getLogger(__name__)

NAME = "torch-compile"
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SDPA_BACKENDS = ("auto", "flash", "cudnn", "efficient", "math")
_CUDA_ONLY_SDPA = ("cudnn", "efficient")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
_RECOMPILE_MARKERS = ("fail_on_recompile", "Detected recompile")


@dataclass(frozen=True)
class TorchCompileOptions(DiffusersEagerOptions):
    """diffusers-eager's options (device, dtype, num_threads) plus how to compile."""

    mode: str = "default"  # one of MODES
    fullgraph: bool = True  # a graph break is an error, not a silent fall back to eager
    dynamic: bool = False  # False: one static graph per batch size; True: a dynamic batch dimension
    regional: bool = False  # compile the repeated blocks only
    regional_blocks: tuple[str, ...] = ()  # block class names; () = each module's _repeated_blocks
    compile_vae: bool = False  # also the VAE decoder
    compile_text_encoders: bool = False  # also every text encoder
    freezing: bool = False  # inductor constant-folds the weights (inference only; helps on the CPU)
    compile_backend: str = "inductor"  # one of COMPILE_BACKENDS
    warmup_batch_sizes: tuple[int, ...] = ()  # () = the size of the warm-up batch
    fuse_qkv: bool = False  # fuse each attention block's q, k, v projections into one matmul
    channels_last: bool = False  # NHWC memory format for the denoiser and the VAE
    sdpa_backend: str = "auto"  # one of SDPA_BACKENDS; auto = torch's own choice per call
    coordinate_descent_tuning: bool = False  # inductor tunes each generated kernel's launch parameters
    epilogue_fusion: bool = True  # inductor fuses pointwise epilogues into matmul templates (its default)
    cache_dir: str = ""  # inductor's on-disk cache; "" = torch's default (TORCHINDUCTOR_CACHE_DIR or /tmp)

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except BackendError as exc:
            raise BackendError(f"{NAME}: {str(exc).removeprefix('diffusers-eager: ')}") from exc
        if self.mode not in MODES:
            raise BackendError(f"{NAME}: mode {self.mode!r} is not supported; choose one of: {', '.join(MODES)}")
        if self.compile_backend not in COMPILE_BACKENDS:
            raise BackendError(
                f"{NAME}: compile_backend {self.compile_backend!r} is not supported; "
                f"choose one of: {', '.join(COMPILE_BACKENDS)}"
            )
        if self.compile_backend != "inductor" and (self.mode != "default" or self.freezing):
            raise BackendError(
                f"{NAME}: mode {self.mode!r} and freezing need compile_backend 'inductor', not {self.compile_backend!r}"
            )
        if self.mode == "reduce-overhead" and not self.device.startswith("cuda"):
            raise BackendError(
                f"{NAME}: mode 'reduce-overhead' uses CUDA graphs, which need a CUDA device, not "
                f"{self.device!r}; on the CPU use default, max-autotune or max-autotune-no-cudagraphs"
            )
        if self.sdpa_backend not in SDPA_BACKENDS:
            raise BackendError(
                f"{NAME}: sdpa_backend {self.sdpa_backend!r} is not supported; "
                f"choose one of: {', '.join(SDPA_BACKENDS)}"
            )
        if self.sdpa_backend in _CUDA_ONLY_SDPA and not self.device.startswith("cuda"):
            raise BackendError(
                f"{NAME}: sdpa_backend {self.sdpa_backend!r} has CUDA kernels only; device is {self.device!r}. "
                "On the CPU use auto, flash or math"
            )
        if any(b < 1 for b in self.warmup_batch_sizes):
            raise BackendError(f"{NAME}: warmup_batch_sizes {list(self.warmup_batch_sizes)} must all be >= 1")


class TorchCompileBackend(DiffusersEagerBackend):
    """The eager pipeline with its modules compiled in place (`nn.Module.compile`)."""

    name = NAME
    Options = TorchCompileOptions

    def __init__(self, model: ModelSpec, options: TorchCompileOptions | None = None) -> None:
        options = options if options is not None else TorchCompileOptions()
        super().__init__(model, options)
        self.options: TorchCompileOptions = options
        self._modules: list[str] = []  # what was compiled, e.g. ["unet", "vae.decoder"]
        self._blocks: dict[str, int] = {}  # regional: block class -> number compiled
        self._sizes: tuple[int, ...] = ()  # batch sizes compiled in warm-up
        self._compile_s: dict[int, float] = {}
        self._first_call_s: dict[int, float] = {}
        self._steady_s: dict[int, float] = {}
        self._padded: Counter[str] = Counter()
        self._recipe: dict[str, Any] = {}  # what the GPU-recipe options did to the pipeline
        self._cache: dict[str, int] = {}  # inductor FX-graph cache hits and misses during warm-up

    def load(self) -> None:
        if self.options.cache_dir:
            # Read by inductor when it first touches its cache (in warm-up), so set before compiling.
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(self.options.cache_dir).expanduser())
        super().load()
        pipe, _ = self._loaded()
        start = time.perf_counter()
        targets = self._targets(pipe)
        for label, module in targets:
            self._compile(label, module)
        self._modules = [label for label, _ in targets]
        logger.info(
            "compile: %s with torch.compile (mode %s, fullgraph %s, dynamic %s, %s%s); compiles in warm-up (%.2f s)",
            ", ".join(self._modules),
            self.options.mode,
            self.options.fullgraph,
            self.options.dynamic,
            "regional: " + ", ".join(f"{n} x {c}" for c, n in self._blocks.items())
            if self.options.regional
            else "whole",
            ", freezing" if self.options.freezing else "",
            time.perf_counter() - start,
        )

    def _before_quantize(self, pipe: Any) -> None:
        self._recipe = _apply_recipe(pipe, self._denoiser_name, self.options)

    def warmup(self, batch: PromptBatch) -> None:
        sizes = tuple(sorted(set(self.options.warmup_batch_sizes or (len(batch),))))
        self._sizes = ()
        if self.model.pretokenize and not batch.encoded:  # warm up the path timed calls take
            encoded = self.preprocess_prompts(batch.prompts, batch.negative_prompts)
            batch = dataclasses.replace(batch, encoded=tuple(encoded or ()))
        counters = _inductor_cache_counters()
        with self._compile_config(len(sizes)), self._attention():
            for size in sizes:
                one = resize_batch(batch, size)
                start = time.perf_counter()
                super().generate(one)
                first = time.perf_counter() - start
                start = time.perf_counter()
                try:
                    with torch.compiler.set_stance("fail_on_recompile"):
                        super().generate(one)
                except RuntimeError as exc:
                    if not _is_recompile(exc):
                        raise
                    raise BackendError(
                        f"{NAME}: a second batch of {size} compiled again, so timed runs would too: {_first_line(exc)}"
                    ) from exc
                steady = time.perf_counter() - start
                self._first_call_s[size] = round(first, 3)
                self._steady_s[size] = round(steady, 3)
                self._compile_s[size] = round(max(0.0, first - steady), 3)
                logger.info(
                    "compile: batch of %d in %.2f s (first call %.2f s, then %.2f s)",
                    size,
                    self._compile_s[size],
                    first,
                    steady,
                )
        after = _inductor_cache_counters()
        self._cache = {k: after[k] - counters[k] for k in after}
        self._sizes = sizes

    def generate(self, batch: PromptBatch) -> ImageBatch:
        if not self._sizes:
            self._loaded()  # "not loaded" comes first
            raise BackendError(f"{NAME}: generate() before warmup(); warm-up compiles, timed calls must not")
        n = len(batch)
        size = padded_size(n, self._sizes, NAME)
        if size != n:
            self._padded[f"{n}->{size}"] += 1
            batch = resize_batch(batch, size)
        try:
            with torch.compiler.set_stance("fail_on_recompile"), self._attention():
                out = super().generate(batch)
        except RuntimeError as exc:
            if not _is_recompile(exc):
                raise
            raise BackendError(
                f"{NAME}: a batch of {n} (run as {size}) would compile inside a timed run: {_first_line(exc)}"
            ) from exc
        if size == n:
            return out
        return ImageBatch(
            np.ascontiguousarray(out.images[:n]), stage_times_ns=out.stage_times_ns, step_times_ns=out.step_times_ns
        )

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        o = self.options
        d["compile"] = {
            "modules": list(self._modules),
            "mode": o.mode,
            "fullgraph": o.fullgraph,
            "dynamic": o.dynamic,
            "regional": o.regional,
            "regional_blocks": dict(self._blocks),
            "freezing": o.freezing,
            "compile_backend": o.compile_backend,
            "batch_sizes": list(self._sizes),
            "compile_s": {str(k): v for k, v in self._compile_s.items()},
            "first_call_s": {str(k): v for k, v in self._first_call_s.items()},
            "steady_call_s": {str(k): v for k, v in self._steady_s.items()},
            "padded_batches": dict(self._padded),
            "fuse_qkv": o.fuse_qkv,
            "channels_last": o.channels_last,
            "sdpa_backend": o.sdpa_backend,
            "coordinate_descent_tuning": o.coordinate_descent_tuning,
            "epilogue_fusion": o.epilogue_fusion,
            "recipe_applied": dict(self._recipe),
            "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR") or None,
            "cache": dict(self._cache),
        }
        d["build_s"] = {"compile": round(sum(self._compile_s.values()), 3)}
        return d

    # -- helpers ---------------------------------------------------------------------------

    def _targets(self, pipe: Any) -> list[tuple[str, Any]]:
        """(label, module) for each module to compile: the denoiser, then what the options add."""
        denoiser = "transformer" if getattr(pipe, "transformer", None) is not None else "unet"
        if getattr(pipe, denoiser, None) is None:
            raise BackendError(f"{NAME}: {type(pipe).__name__} has neither a transformer nor a unet to compile")
        targets = [(denoiser, getattr(pipe, denoiser))]
        if self.options.compile_vae:
            decoder = getattr(getattr(pipe, "vae", None), "decoder", None)
            if decoder is None:
                raise BackendError(f"{NAME}: compile_vae is set, but {type(pipe).__name__} has no vae.decoder")
            targets.append(("vae.decoder", decoder))
        if self.options.compile_text_encoders:
            encoders = [n for n in ("text_encoder", "text_encoder_2", "text_encoder_3") if getattr(pipe, n, None)]
            if not encoders:
                raise BackendError(f"{NAME}: compile_text_encoders is set, but {type(pipe).__name__} has none")
            targets += [(n, getattr(pipe, n)) for n in encoders]
            _install_output_hooks(pipe, encoders)
        return targets

    def _compile(self, label: str, module: Any) -> None:
        o = self.options
        kwargs: dict[str, Any] = {"fullgraph": o.fullgraph, "dynamic": o.dynamic, "backend": o.compile_backend}
        if o.mode != "default":
            kwargs["mode"] = o.mode
        if not o.regional:
            module.compile(**kwargs)
            return
        blocks = o.regional_blocks or tuple(getattr(module, "_repeated_blocks", ()) or ())
        if not blocks:
            raise BackendError(
                f"{NAME}: regional compilation of {label} ({type(module).__name__}) needs its block classes: "
                'it has no _repeated_blocks; name them with backend.regional_blocks=["ClassName", ...]'
            )
        found = 0
        for sub in module.modules():
            if type(sub).__name__ in blocks:
                sub.compile(**kwargs)
                self._blocks[type(sub).__name__] = self._blocks.get(type(sub).__name__, 0) + 1
                found += 1
        if not found:
            raise BackendError(
                f"{NAME}: regional compilation of {label} ({type(module).__name__}) found none of the "
                f"blocks {list(blocks)} in it"
            )

    def _attention(self) -> contextlib.AbstractContextManager[Any]:
        """The SDPA kernel asked for, around warm-up and timed calls alike (auto: torch's choice)."""
        if self.options.sdpa_backend == "auto":
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        kernel = {
            "flash": SDPBackend.FLASH_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "math": SDPBackend.MATH,
        }[self.options.sdpa_backend]
        return sdpa_kernel(kernel)

    @contextlib.contextmanager
    def _compile_config(self, n_sizes: int) -> Iterator[None]:
        """While warming up: room for one graph per batch size (and per block shape) without
        dynamo's silent fall back to eager at its recompile limit, which is an error instead; and
        inductor's freezing when asked for."""
        import torch._dynamo.config as dynamo_config

        limit = max(dynamo_config.recompile_limit, 8 * n_sizes)
        with contextlib.ExitStack() as stack:
            stack.enter_context(dynamo_config.patch(recompile_limit=limit, fail_on_recompile_limit_hit=True))
            import torch._inductor.config as inductor_config

            stack.enter_context(
                inductor_config.patch(
                    freezing=self.options.freezing,
                    coordinate_descent_tuning=self.options.coordinate_descent_tuning,
                    epilogue_fusion=self.options.epilogue_fusion,
                )
            )
            yield


def _apply_recipe(pipe: Any, denoiser_name: str, options: TorchCompileOptions) -> dict[str, Any]:
    """fuse_qkv and channels_last, before compiling (the compiled graphs see the fused, NHWC modules)."""
    done: dict[str, Any] = {}
    denoiser = getattr(pipe, denoiser_name)
    if options.fuse_qkv:
        fuse = getattr(denoiser, "fuse_qkv_projections", None)
        if fuse is None:
            raise BackendError(f"{NAME}: fuse_qkv is set, but {type(denoiser).__name__} has no fuse_qkv_projections()")
        fuse()
        done["fused_qkv"] = [denoiser_name]
    if options.channels_last:
        converted = [denoiser_name]
        denoiser.to(memory_format=torch.channels_last)
        vae = getattr(pipe, "vae", None)
        if vae is not None:
            vae.to(memory_format=torch.channels_last)
            converted.append("vae")
        done["channels_last"] = converted
    return done


def _inductor_cache_counters() -> dict[str, int]:
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    return {"fx_graph_hits": int(inductor["fxgraph_cache_hit"]), "fx_graph_misses": int(inductor["fxgraph_cache_miss"])}


def _install_output_hooks(pipe: Any, encoders: list[str]) -> None:
    """One eager call of each text encoder before it is compiled: transformers installs its
    output-capturing hooks on the first call, under a lock that dynamo cannot trace (fullgraph
    fails there); installed beforehand, the compiled calls only use them."""
    for name in encoders:
        encoder = getattr(pipe, name)
        tokenizer = getattr(pipe, name.replace("text_encoder", "tokenizer"), None)
        length = int(getattr(tokenizer, "model_max_length", 0) or 0)
        if not 0 < length <= 4096:
            length = 8
        ids = torch.zeros((1, length), dtype=torch.int64, device=encoder.device)
        with torch.inference_mode():
            encoder(ids, output_hidden_states=True)


def _is_recompile(exc: BaseException) -> bool:
    return any(marker in str(exc) for marker in _RECOMPILE_MARKERS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
