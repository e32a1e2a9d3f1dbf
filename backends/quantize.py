"""Quantization of the denoiser's linear layers through torchao (`backend.quantize`).

| mode | what torchao does to each nn.Linear of the denoiser (UNet or transformer) | where it runs |
|---|---|---|
| `none` | nothing | everywhere |
| `float8_dynamic` | float8 weights and float8 activations scaled per row at run time | CUDA, compute capability 8.9+ |
| `float8_weight` | float8 weights, activations in the run's dtype | CUDA, compute capability 8.9+ |
| `int8_dynamic` | int8 weights and int8 activations scaled per token at run time | CPU and CUDA |
| `int8_weight` | int8 weights, activations in the run's dtype | CPU and CUDA |

Only the denoiser is quantized: it is where the time goes (the stage table shows about 80 % of a batch
in `denoise`), and its linear layers are what FP8 recipes for SDXL and FLUX quantize. Text encoders
and the VAE keep the run's dtype. Images change: the parity contract for a quantized backend is the
image difference against the unquantized run that `harness compare` reports, not bit-equality.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from backends.base import BackendError

logger = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "float8_dynamic", "float8_weight", "int8_dynamic", "int8_weight")
FLOAT8_MIN_CAPABILITY = (8, 9)  # Ada and Hopper: the first GPUs with FP8 tensor cores
# Layers smaller than this stay in the run's dtype: quantizing them saves nothing and costs accuracy.
MIN_FEATURES = 16


def check_quantize(mode: str, device: str, who: str) -> None:
    """Refuse a mode this device cannot run, before anything loads."""
    if mode not in QUANTIZE_MODES:
        raise BackendError(f"{who}: quantize {mode!r} is not supported; choose one of: {', '.join(QUANTIZE_MODES)}")
    if mode == "none":
        return
    _config(mode)  # torchao installed?
    if not mode.startswith("float8"):
        return
    if not device.startswith("cuda"):
        raise BackendError(
            f"{who}: quantize {mode!r} needs an NVIDIA GPU of compute capability "
            f"{FLOAT8_MIN_CAPABILITY[0]}.{FLOAT8_MIN_CAPABILITY[1]} or newer (FP8 tensor cores); device is {device!r}. "
            "int8_dynamic and int8_weight run on the CPU"
        )
    if torch.cuda.is_available():
        index = torch.device(device).index or 0
        capability = torch.cuda.get_device_capability(index)
        if capability < FLOAT8_MIN_CAPABILITY:
            raise BackendError(
                f"{who}: quantize {mode!r} needs compute capability {FLOAT8_MIN_CAPABILITY[0]}."
                f"{FLOAT8_MIN_CAPABILITY[1]} or newer (FP8 tensor cores); {torch.cuda.get_device_name(index)} "
                f"has {capability[0]}.{capability[1]}. Use int8_dynamic or int8_weight"
            )


def _config(mode: str) -> Any:
    try:
        import torchao.quantization as q
    except ImportError as exc:
        raise BackendError(
            f"quantize {mode!r} needs torchao, which is not installed; run: pip install -e '.[quantize]'"
        ) from exc
    if mode == "float8_dynamic":
        return q.Float8DynamicActivationFloat8WeightConfig(granularity=q.PerRow())
    if mode == "float8_weight":
        return q.Float8WeightOnlyConfig()
    if mode == "int8_dynamic":
        return q.Int8DynamicActivationInt8WeightConfig()
    return q.Int8WeightOnlyConfig()


def _quantizable(module: torch.nn.Module, fqn: str) -> bool:
    return (
        isinstance(module, torch.nn.Linear)
        and module.in_features >= MIN_FEATURES
        and module.out_features >= MIN_FEATURES
    )


def quantize_denoiser(denoiser: torch.nn.Module, mode: str) -> int:
    """Quantize the denoiser's linear layers in place; returns how many were quantized."""
    if mode == "none":
        return 0
    config = _config(mode)
    from torchao.quantization import quantize_

    count = sum(1 for name, m in denoiser.named_modules() if _quantizable(m, name))
    if count == 0:
        raise BackendError(f"quantize {mode!r}: the denoiser has no linear layers of {MIN_FEATURES}+ features")
    quantize_(denoiser, config, filter_fn=_quantizable)
    logger.info("quantize: %d linear layers of the denoiser to %s (torchao)", count, mode)
    return count


def torchao_version() -> str | None:
    try:
        import torchao
    except ImportError:
        return None
    return str(torchao.__version__)
