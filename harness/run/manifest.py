"""What a run needs recorded to be repeated: versions, revision, host, model weights and seeds."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import harness
from harness.config import PROJECT_ROOT
from harness.loadgen.module import loadgen_build

log = logging.getLogger(__name__)

LIBRARIES = (
    "torch",
    "diffusers",
    "transformers",
    "numpy",
    "mlcommons-loadgen",
    "onnxruntime",
    "tensorrt",
    "open-clip-torch",
    "pytorch-fid",
)
# Environment variables that can change speed or memory without changing the config: the CUDA allocator's
# settings (PYTORCH_CUDA_ALLOC_CONF, e.g. expandable_segments:True against fragmentation), thread counts,
# visible devices, compiler caches. Recorded so a figure can be repeated. These are the harness process's;
# a worker process may set its own CUDA_VISIBLE_DEVICES (harness/workers/process_pool.py).
ENVIRONMENT_PREFIXES = ("PYTORCH_", "TORCH_", "TORCHINDUCTOR_", "CUDA_", "CUBLAS_", "CUDNN_", "NCCL_", "NVIDIA_TF32")
ENVIRONMENT_NAMES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ORT_TENSORRT_FP16_ENABLE", "HF_HUB_OFFLINE")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".plan", ".engine")


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_revision() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def host_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": [],
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cuda"] = torch.version.cuda
            info["driver"] = nvidia_driver_version()
    except ImportError:
        pass
    return info


def nvidia_driver_version(path: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The NVIDIA kernel driver's version, from /proc (no NVML needed), e.g. '580.159.04'."""
    try:
        text = path.read_text()
    except OSError:
        return None
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


def weights_hash(folder: str | Path) -> dict[str, Any]:
    """SHA-256 over the weight files of a model folder (names and bytes, in sorted order).

    Hashing several GB takes seconds, so the result is cached next to the harness cache keyed by
    each file's path, size and modification time.
    """
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    stamp = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = hashlib.sha256(json.dumps([str(root.resolve()), stamp]).encode()).hexdigest()[:24]
    cache = cache_dir() / "weights-hash" / f"{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(root)).encode())
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    result = {
        "sha256": digest.hexdigest(),
        "files": len(files),
        "bytes": sum(s for _, s, _ in stamp),
    }
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(result))
    except OSError:
        log.debug("could not cache the weights hash in %s", cache)
    return result


def performance_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {k: env[k] for k in sorted(env) if k in ENVIRONMENT_NAMES or k.startswith(ENVIRONMENT_PREFIXES)}


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "t2i-harness")


@dataclass(frozen=True)
class WhatRan:
    """What a run actually executed, in words a submission can copy (measurements.json, systems/*.json):
    never the model config's intentions where the backend did something else."""

    backend: str
    weights: str  # a folder, "random ...", "built in code ...", or "none ..." for the fake backend
    weight_data_types: str  # the precision the backend ran in; "none" where no model ran
    height: int
    width: int
    steps: int
    runs_model: bool  # False for the fake backend: synthetic images, no inference


def what_ran(config: dict[str, Any], backend: dict[str, Any], model_path: str) -> WhatRan:
    run, model = config["run"], config["model"]
    name = str(run["backend"])
    if name == "fake":
        weights, precision, runs_model = "none: the fake backend loads no weights and runs no model", "none", False
    else:
        runs_model = True
        precision = str(backend.get("dtype") or backend.get("precision") or "unknown")
        if backend.get("quantize") not in (None, "none"):
            precision += f", denoiser linear layers {backend['quantize']} (torchao)"
        if model.get("weights") == "random":
            weights = f"random weights (architecture only, from {model.get('components') or 'its components'})"
        elif model_path:
            weights = model_path
        elif model.get("builder"):
            weights = f"built in code with seeded random weights ({model['builder']})"
        else:
            weights = "unknown"
    return WhatRan(name, weights, precision, int(model["height"]), int(model["width"]), int(model["steps"]), runs_model)


def round_record(config: dict[str, Any], seeds: dict[str, Any] | None = None) -> dict[str, Any]:
    """The MLPerf round the run was made for and where its LoadGen seeds came from."""
    name = str(config.get("mlperf", {}).get("round") or "")
    overridden = sorted(k for k in config.get("loadgen_overrides", {}) if k.endswith("_rng_seed"))
    source = f"the {name} round's, set by the harness (mlperf.round)" if name else "LoadGen's built-in mlperf.conf"
    if overridden:
        source += f", then --set loadgen.{', loadgen.'.join(overridden)}"
    return {"round": name or None, "seeds_from": source, "seeds": seeds}


def build_manifest(
    *,
    config: dict[str, Any],
    backend: dict[str, Any],
    model_path: str,
    prompts: dict[str, Any],
    latents: dict[str, Any],
    loadgen: dict[str, Any],
) -> dict[str, Any]:
    return {
        "harness_version": harness.__version__,
        "git": git_revision(),
        "libraries": library_versions(),
        "host": host_info(),
        "environment": performance_environment(),
        "backend": backend,
        "model": {
            "name": config["model"]["name"],
            "path": model_path,
            "weights": weights_hash(model_path) if model_path else None,
        },
        "prompts": prompts,
        "latents": latents,
        # Which LoadGen ran: the source build (its sdist hash or checkout) or the wheel, as harness.loadgen.module
        # found it, with the git revision LoadGen logs about itself.
        "loadgen": {**loadgen, "build": loadgen_build().to_dict()},
        "mlperf": round_record(config, loadgen.get("seeds")),
        "ran": asdict(what_ran(config, backend, model_path)),
    }
