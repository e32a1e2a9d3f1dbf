"""Peak memory of a run: this process, its worker processes, and what torch held on CUDA devices."""

from __future__ import annotations

import sys
from collections.abc import Mapping

PEAK_MEMORY_KEYS = ("cpu_rss_mib", "children_rss_mib", "cuda_allocated_mib", "cuda_reserved_mib")


def headline_memory_mib(mem: Mapping[str, float | None]) -> float | None:
    """The one figure of a peak_memory() dict: CUDA reserved where measured (what the device held), else
    allocated, else the largest resident set (this process or a worker process)."""
    for key in ("cuda_reserved_mib", "cuda_allocated_mib"):
        value = mem.get(key)
        if value is not None:
            return float(value)
    cpu = [v for v in (mem.get("cpu_rss_mib"), mem.get("children_rss_mib")) if v is not None]
    return float(max(cpu)) if cpu else None


def peak_memory(worker_processes: bool = False) -> dict[str, float | None]:
    """Peak memory so far, in MiB: this process's resident set, the largest finished child process's
    (with worker processes only: any other child, such as `git` for the manifest, reports the parent's
    resident set it was forked with), and, where torch has used CUDA here, the most CUDA memory torch allocated and
    reserved (its caching allocator's footprint: what the device actually held). None where it cannot be
    measured (memory a library allocates outside torch, such as ONNX Runtime's or TensorRT's on a GPU, or
    CUDA memory of worker processes, is not in the CUDA figures)."""
    out: dict[str, float | None] = dict.fromkeys(PEAK_MEMORY_KEYS)
    try:
        import resource
    except ImportError:  # not on POSIX
        resource = None  # type: ignore[assignment]
    if resource is not None:
        unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        out["cpu_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / 2**20, 1)
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if worker_processes else 0
        out["children_rss_mib"] = round(children * unit / 2**20, 1) if children else None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak = max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
        out["cuda_allocated_mib"] = round(peak / 2**20, 1)
        reserved = max(torch.cuda.max_memory_reserved(i) for i in range(torch.cuda.device_count()))
        out["cuda_reserved_mib"] = round(reserved / 2**20, 1)
    return out
