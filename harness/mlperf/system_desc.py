"""systems/<system>.json of a submission: hardware and software read from the machine and the runs'
manifests, everything else from the user's file (configs/submission/system.toml is the template).

Required fields that must hold a value and are still empty after both are an error that names them
all: nothing is invented.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from harness.config import read_toml
from harness.errors import ConfigError
from harness.mlperf import rules

TEMPLATE = "configs/submission/system.toml"
USER_TABLES = ("system", "measurements")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.0f} GB"


def capture_machine(manifest: dict[str, Any]) -> dict[str, Any]:
    """What can be read: host and accelerators from the run's manifest (the machine that ran it),
    memory and storage from this machine, the software stack from the manifest's versions."""
    host = manifest.get("host", {})
    libs = manifest.get("libraries", {})
    cpuinfo = _cpuinfo()
    sockets = len({line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("physical id")}) or 1
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or host.get("cpu_count") or os.cpu_count() or 1
        memory = _gib(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover - psutil is a dependency
        cores, memory = host.get("cpu_count") or os.cpu_count() or 1, ""
    gpus = list(host.get("gpus") or [])
    out: dict[str, Any] = {
        "number_of_nodes": "1",
        "host_processor_model_name": host.get("cpu") or platform.processor(),
        "host_processors_per_node": str(sockets),
        "host_processor_core_count": str(max(int(cores) // sockets, 1)),
        "host_memory_capacity": memory,
        "host_storage_capacity": _gib(shutil.disk_usage(Path.cwd().anchor or "/").total),
        "operating_system": host.get("os") or platform.platform(),
        "accelerators_per_node": str(len(gpus)),
        "accelerator_model_name": ", ".join(sorted(set(gpus))) if gpus else "N/A",
        "accelerator_memory_capacity": _accelerator_memory() if gpus else "N/A",
    }
    out["framework"] = framework_of(manifest)
    stack = [f"Python {host.get('python') or platform.python_version()}"]
    if host.get("cuda"):
        stack.append(f"CUDA {host['cuda']}")
    # the LoadGen that ran: a source build (native/, docs/native.md) or the wheel, as the manifest recorded it
    build = (manifest.get("loadgen") or {}).get("build") or {}
    if build.get("version"):
        how = "source build" if build.get("origin") == "source-build" else "wheel"
        stack.append(f"mlcommons-loadgen {build['version']} ({how})")
    elif "mlcommons-loadgen" in libs:
        stack.append(f"mlcommons-loadgen {libs['mlcommons-loadgen']}")
    stack += [f"{name} {libs[name]}" for name in ("transformers", "numpy") if name in libs]
    git = manifest.get("git", {})
    stack.append(f"t2i-harness {manifest.get('harness_version', '?')} ({str(git.get('commit', 'unknown'))[:12]})")
    out["other_software_stack"] = ", ".join(stack)
    return out


# The libraries each backend runs the model with: the system description names what ran, not what
# happens to be installed.
BACKEND_FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "diffusers-eager": ("torch", "diffusers"),
    "torch-compile": ("torch", "diffusers"),
    "onnxruntime": ("onnxruntime",),
    "tensorrt": ("tensorrt",),
}
_LIBRARY_NAMES = {"torch": "PyTorch", "diffusers": "diffusers", "onnxruntime": "ONNX Runtime", "tensorrt": "TensorRT"}


def framework_of(manifest: dict[str, Any]) -> str:
    """The framework field: the libraries of the backend the run used, with their versions."""
    libs = manifest.get("libraries", {})
    backend = str(manifest.get("ran", {}).get("backend") or manifest.get("backend", {}).get("backend") or "")
    if backend == "fake":
        return "none: the fake backend ran no model (t2i-harness plumbing test)"
    names = BACKEND_FRAMEWORKS.get(backend)
    if names is None:
        return f"t2i-harness backend {backend!r}" if backend else ""
    return ", ".join(f"{_LIBRARY_NAMES[n]} {libs[n]}" if n in libs else _LIBRARY_NAMES[n] for n in names)


def _accelerator_memory() -> str:
    """Memory of the first CUDA device, where this machine has one ("" if it cannot be read here)."""
    if "torch" not in sys.modules:
        try:
            import torch  # noqa: F401
        except ImportError:
            return ""
    import torch

    if not torch.cuda.is_available():
        return ""
    return _gib(torch.cuda.get_device_properties(0).total_memory)


def read_user_file(path: str | None) -> dict[str, dict[str, Any]]:
    """The user's TOML: [system] fields for systems/<system>.json, [measurements] for measurements.json."""
    if not path:
        return {name: {} for name in USER_TABLES}
    data = read_toml(path)
    unknown = [k for k in data if k not in USER_TABLES]
    if unknown:
        raise ConfigError(
            f"{path}: unknown table(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(USER_TABLES)}"
        )
    out: dict[str, dict[str, Any]] = {}
    for name in USER_TABLES:
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table of key = value")
        for key, value in table.items():
            if not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"{path}: [{name}] {key} must be a string or a number, got {value!r}")
        out[name] = dict(table)
    return out


def build_system_json(
    division: str, org: str, system: str, captured: dict[str, Any], user: dict[str, Any], source: str | None
) -> dict[str, Any]:
    """Captured fields, then the user's, then the identity of the submission; check what is required."""
    desc: dict[str, Any] = {key: "" for key in rules.SYSTEM_REQUIRED_FIELDS}
    desc.update(captured)
    desc.update({k: v for k, v in user.items() if v != "" or k not in captured})
    desc.update({"division": division, "submitter": org, "system_name": user.get("system_name") or system})
    empty = [k for k in rules.SYSTEM_MEANINGFUL_FIELDS if desc.get(k) in ("", None)]
    where = f"the [system] table of {source}" if source else f"a --system-info FILE (template: {TEMPLATE})"
    if empty:
        raise ConfigError(f"systems/{system}.json: required fields are empty: {', '.join(empty)}; set them in {where}")
    if str(desc["status"]).lower() not in rules.SYSTEM_STATUSES:
        raise ConfigError(
            f"systems/{system}.json: status {desc['status']!r}; allowed: {', '.join(rules.SYSTEM_STATUSES)}"
        )
    if desc["system_type"] not in rules.SYSTEM_TYPES:
        raise ConfigError(
            f"systems/{system}.json: system_type {desc['system_type']!r}; allowed: {', '.join(rules.SYSTEM_TYPES)}"
        )
    return desc
