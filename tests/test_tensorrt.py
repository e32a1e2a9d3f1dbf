"""The tensorrt backend. It needs TensorRT (pip install -e '.[tensorrt]') and an NVIDIA GPU; neither
is on these machines, so the tests marked `tensorrt` skip here and have NOT been run. What they
share with the onnxruntime backend (the ONNX export, the profile shapes, the SDXL loop) is tested in
tests/test_onnx.py and tests/test_backend_contract.py."""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from backends.base import BackendError, ModelSpec, PromptBatch
from backends.models.tiny_model import ensure_tiny_model, tiny_latent_shape
from backends.registry import BACKENDS, backend_class

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
SKIP_REASON = (
    "needs TensorRT and an NVIDIA GPU: "
    + ("tensorrt is not installed (pip install -e '.[tensorrt]')" if not HAVE_TENSORRT else "")
    + ("; " if not HAVE_TENSORRT and not torch.cuda.is_available() else "")
    + ("torch.cuda.is_available() is False" if not torch.cuda.is_available() else "")
)
needs_gpu = pytest.mark.skipif(not (HAVE_TENSORRT and torch.cuda.is_available()), reason=SKIP_REASON)

# A first guess, to be checked on a GPU: fp16 engines against fp16 eager on the same GPU.
PARITY_MAX_ABS_DIFF = 16
PARITY_MEAN_ABS_DIFF = 1.0


def make_batch(n: int, seed: int = 0) -> PromptBatch:
    lat = np.random.default_rng(seed).standard_normal((n, *tiny_latent_shape())).astype(np.float32)
    prompts = ("a red bicycle", "two dogs playing in the snow", "a bowl of soup")
    return PromptBatch(tuple(range(n)), tuple(prompts[i % 3] for i in range(n)), ("low quality",) * n, lat)


def test_registered_with_the_extra_that_installs_it() -> None:
    assert BACKENDS["tensorrt"].extra == "tensorrt"
    if HAVE_TENSORRT:
        pytest.skip("tensorrt is installed: the missing-module error cannot be provoked")
    with pytest.raises(BackendError, match=r"backend 'tensorrt' needs a module that is not installed.*\[tensorrt\]"):
        backend_class("tensorrt")


@pytest.fixture(scope="module")
def spec(harness_cache: Path) -> ModelSpec:
    return ModelSpec("tiny", str(ensure_tiny_model(harness_cache)), "StableDiffusionXLPipeline", 8, 8.0, 64, 64)


@pytest.fixture(scope="module")
def engines(spec: ModelSpec) -> Iterator[Any]:
    cls = backend_class("tensorrt")
    b = cls(spec, cls.Options(precision="fp16", warmup_batch_sizes=(1, 3)))
    b.load()
    b.warmup(make_batch(3))
    yield b
    b.close()
    b.close()


@pytest.mark.tensorrt
@needs_gpu
def test_contract_and_parity_with_eager_on_the_gpu(spec: ModelSpec, engines: Any) -> None:
    from backends.diffusers_eager import DiffusersEagerBackend, DiffusersEagerOptions
    from harness.studies.compare import image_parity

    batch = make_batch(3, seed=5)
    out = engines.generate(batch).images
    assert out.dtype == np.uint8 and out.shape == (3, 64, 64, 3) and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, engines.generate(batch).images)
    assert engines.generate(make_batch(2)).images.shape == (2, 64, 64, 3)  # padded
    eager = DiffusersEagerBackend(spec, DiffusersEagerOptions(device="cuda", dtype="float16"))
    eager.load()
    try:
        parity = image_parity(eager.generate(batch).images, out)
    finally:
        eager.close()
    print(f"\nparity tensorrt fp16 against diffusers-eager float16 (cuda): {parity.describe()}")
    assert parity.max_abs_diff <= PARITY_MAX_ABS_DIFF and parity.mean_abs_diff <= PARITY_MEAN_ABS_DIFF


@pytest.mark.tensorrt
@needs_gpu
def test_engines_come_from_the_cache_the_second_time(spec: ModelSpec, engines: Any) -> None:
    cls = backend_class("tensorrt")
    b = cls(spec, cls.Options(precision="fp16", warmup_batch_sizes=(1, 3)))
    b.load()
    try:
        b.warmup(make_batch(3))
        described = b.describe()
        assert all(e["cache_hit"] for e in described["engines"].values())
        assert described["build_s"]["engine_build"] == 0.0
    finally:
        b.close()


@pytest.fixture
def trt_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    """backends.onnx_family.tensorrt_backend, imported against the real tensorrt if installed, else against a
    stub with just the names it reads at import time: enough to check its options here."""
    # Everything else it imports first, with the real environment (torch probes for tensorrt).
    import backends.diffusers_eager  # noqa: F401
    import backends.onnx_family.sdxl_loop  # noqa: F401

    if not HAVE_TENSORRT:
        stub = types.ModuleType("tensorrt")
        stub.__version__ = "stub"  # type: ignore[attr-defined]
        stub.DataType = types.SimpleNamespace(  # type: ignore[attr-defined]
            FLOAT=0, HALF=1, BF16=2, INT32=3, INT64=4, BOOL=5
        )
        stub.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=2: None})  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt", stub)
    monkeypatch.delitem(sys.modules, "backends.onnx_family.tensorrt_backend", raising=False)
    import backends.onnx_family.tensorrt_backend as module

    yield module
    sys.modules.pop("backends.onnx_family.tensorrt_backend", None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"precision": "fp8"}, "needs an ONNX graph with FP8 quantize/dequantize nodes"),
        ({"precision": "int4"}, "precision 'int4' is not supported; choose one of: fp16, bf16, fp32"),
        ({"device": "cpu"}, "TensorRT runs on cuda or cuda:N"),
        ({"builder_optimization_level": 9}, "builder_optimization_level 9 must be 0 to 5"),
        ({"warmup_batch_sizes": (0,)}, "must all be >= 1"),
    ],
)
def test_bad_options_are_one_clear_error(trt_module: Any, options: dict, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        trt_module.TensorRTOptions(**options)


def test_no_gpu_is_an_error_not_a_fallback(trt_module: Any, spec: ModelSpec) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is here; the no-fallback error cannot be provoked")
    b = trt_module.TensorRTBackend(spec, trt_module.TensorRTOptions())
    with pytest.raises(BackendError, match="TensorRT needs an NVIDIA GPU"):
        b.load()
    b.close()
