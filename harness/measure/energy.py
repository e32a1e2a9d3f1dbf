"""Energy per image from NVIDIA's NVML counters: total energy (mJ) since the driver loaded, read per
device right before and right after the timed run.

`start_meter(devices)` returns a meter whose `stop(images)` gives what goes into summary["energy"]:
{"joules", "joules_per_image", "source", "devices"} where NVML counts, else {"available": False,
"reason": ...} (no nvidia-ml-py, no NVIDIA driver, a device without the counter, or a CPU run). The
counter covers the whole GPU, so other work on the same device in the same window counts too.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Reads one device's total energy counter, in millijoules (nvmlDeviceGetTotalEnergyConsumption).
CounterFn = Callable[[int], int]


def cuda_device_indices(device_names: Sequence[str]) -> list[int]:
    """NVML indices of the CUDA devices a run uses ("cuda" = "cuda:0"); [] for a CPU run.

    NVML numbers devices as the driver does and ignores CUDA_VISIBLE_DEVICES, so a CUDA index is mapped
    through that list when it holds plain numbers."""
    indices: list[int] = []
    for name in device_names:
        low = name.strip().lower()  # "cuda:1", or an ONNX Runtime provider such as "CUDAExecutionProvider"
        if "cuda" not in low and "tensorrt" not in low:
            continue
        match = re.search(r"cuda:(\d+)", low)
        indices.append(int(match.group(1)) if match else 0)
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and all(v.isdigit() for v in visible):
        indices = [int(visible[i]) if i < len(visible) else i for i in indices]
    return sorted(set(indices))


@dataclass
class EnergyMeter:
    devices: list[int]
    read_mj: CounterFn | None  # None: nothing to measure (reason says why)
    source: str = "nvml nvmlDeviceGetTotalEnergyConsumption"
    reason: str = ""
    _start_mj: dict[int, int] = field(default_factory=dict)

    def start(self) -> EnergyMeter:
        if self.read_mj is not None:
            try:
                self._start_mj = {d: self.read_mj(d) for d in self.devices}
            except Exception as exc:  # NVMLError_NotSupported on older GPUs, a lost device, ...
                self.read_mj, self.reason = None, f"NVML energy counter not readable: {type(exc).__name__}: {exc}"
        return self

    def stop(self, images: int) -> dict[str, Any]:
        """Energy used since start(), in joules, and per generated image (None when no image was made)."""
        if self.read_mj is None:
            return {"available": False, "reason": self.reason}
        try:
            end_mj = {d: self.read_mj(d) for d in self.devices}
        except Exception as exc:
            return {"available": False, "reason": f"NVML energy counter not readable: {type(exc).__name__}: {exc}"}
        per_device = {str(d): (end_mj[d] - self._start_mj[d]) / 1e3 for d in self.devices}
        joules = sum(per_device.values())
        return {
            "available": True,
            "joules": round(joules, 3),
            "joules_per_image": round(joules / images, 4) if images > 0 else None,
            "source": self.source,
            "devices": per_device,
        }


def _nvml_counter() -> tuple[CounterFn | None, str]:
    try:
        import pynvml  # the nvidia-ml-py package
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed; pip install nvidia-ml-py"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded: no NVIDIA driver here
        return None, f"NVML is not available: {type(exc).__name__}: {exc}"

    def read(index: int) -> int:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))

    return read, ""


def start_meter(device_names: Sequence[str], counter: CounterFn | None = None) -> EnergyMeter:
    """A started meter over the CUDA devices among `device_names`; `counter` replaces NVML (tests)."""
    devices = cuda_device_indices(device_names)
    if not devices:
        return EnergyMeter([], None, reason="no CUDA device in this run (energy is measured on NVIDIA GPUs only)")
    reason = ""
    if counter is None:
        counter, reason = _nvml_counter()
    if counter is None:
        log.debug("energy: %s", reason)
    return EnergyMeter(devices, counter, reason=reason).start()
