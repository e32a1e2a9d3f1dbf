"""Backend names mapped to lazy imports.

Built-ins register exactly as a plugin would: a name, the module and class that implement it, and
the pip extra that brings its optional dependencies. Nothing is imported until a backend is chosen.
The class (backends.base.BackendClass) carries the rest: its name, its options type (`Options`) and its
constructor, so a new backend is one module and one line here.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, cast

from backends.base import Backend, BackendClass, BackendError, ModelSpec


@dataclass(frozen=True)
class BackendEntry:
    module: str
    class_name: str
    extra: str | None = None  # pip extra that installs what the module imports
    summary: str = ""
    # Compiles or builds per batch shape: it warms up every batch size the SUT will send, and a batch-size
    # search (fit) must not probe sizes it would have to compile for.
    fixed_shapes: bool = False


BACKENDS: dict[str, BackendEntry] = {
    "diffusers-eager": BackendEntry(
        "backends.diffusers_eager",
        "DiffusersEagerBackend",
        summary="any diffusers text-to-image pipeline, eager PyTorch",
    ),
    "fake": BackendEntry(
        "backends.fake",
        "FakeBackend",
        summary="deterministic images from the sample index, configurable latency and failure",
    ),
    "torch-compile": BackendEntry(
        "backends.torch_compile",
        "TorchCompileBackend",
        fixed_shapes=True,
        summary="diffusers-eager with torch.compile (denoiser; VAE decoder, text encoders by option)",
    ),
    "http": BackendEntry("backends.http", "HttpBackend", summary="a deployed service over HTTP (serve, OpenAI API)"),
    "onnxruntime": BackendEntry(
        "backends.onnx_family.onnxruntime_backend",
        "OnnxRuntimeBackend",
        extra="onnx",
        summary="SDXL-family pipelines exported to ONNX, run with ONNX Runtime execution providers",
    ),
    "tensorrt": BackendEntry(
        "backends.onnx_family.tensorrt_backend",
        "TensorRTBackend",
        extra="tensorrt",
        fixed_shapes=True,
        summary="TensorRT engines built from the same ONNX export (NVIDIA GPU; not run yet)",
    ),
}


def has_fixed_shapes(name: str) -> bool:
    entry = BACKENDS.get(name)
    return entry is not None and entry.fixed_shapes


def register(name: str, entry: BackendEntry) -> None:
    """Add a backend (a plugin uses the same path as the built-ins)."""
    if name in BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    BACKENDS[name] = entry


def backend_class(name: str) -> BackendClass:
    """Import and return the class behind `name`. Raises BackendError with the fix."""
    entry = BACKENDS.get(name)
    if entry is None:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(BACKENDS))}")
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        hint = f"pip install -e '.[{entry.extra}]'" if entry.extra else "reinstall the project"
        raise BackendError(
            f"backend {name!r} needs a module that is not installed ({exc.name or exc}); run: {hint}"
        ) from exc
    cls = getattr(module, entry.class_name)
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        raise BackendError(
            f"backend {name!r}: {entry.module}.{entry.class_name} has no Options dataclass (the type of its "
            "[backend] section); every backend class names one"
        )
    return cast(BackendClass, cls)


def options_class(name: str) -> type[Any]:
    """The options type (a dataclass) of backend `name`; importing its module, not building it."""
    return backend_class(name).Options


def option_names(name: str) -> set[str]:
    """The [backend] keys backend `name` accepts."""
    return {f.name for f in dataclasses.fields(options_class(name))}


def create_backend(name: str, model: ModelSpec, options: Any) -> Backend:
    """Construct backend `name` (cheap: nothing loads until `load()`)."""
    return backend_class(name)(model, options)
