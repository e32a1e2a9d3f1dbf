"""Does this CPU run bfloat16 matmuls on fast kernels?

torch sends CPU bfloat16 matmuls and convolutions to oneDNN where oneDNN has bfloat16 kernels for the
CPU (AVX-512, AMX); elsewhere they fall back to slow generic loops. `python -m tools.bf16_cost` measures
it: on this project's 2-core Xeon (AVX-512 with avx512_bf16) a 1024 x 1024 bfloat16 matmul took 1.3-1.7x
the float32 time; held to AVX2 (as on a CPU without AVX-512; oneDNN then reports no bfloat16 support) it
took 52-116x (five runs: 71.7, 115.8, 80.7, 63.3, 52.2; the spread is the float32 time on cores shared
with other jobs).
"""

from __future__ import annotations

from pathlib import Path

import torch

# bfloat16 / float32 time of a 1024 x 1024 matmul held to AVX2, five runs of tools.bf16_cost (above).
BF16_SLOWDOWN_MATMUL = "50-115x"


def cpu_bf16_is_fast() -> tuple[bool, str]:
    """(fast, how it was decided): oneDNN's own answer where torch has oneDNN, else the CPU's flags."""
    try:
        if torch.backends.mkldnn.is_available():
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), "asked oneDNN"
    except (AttributeError, RuntimeError):  # a torch build without the query: read the flags instead
        pass
    flags = _cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"}), "CPU flags avx512_bf16 / amx_bf16 / bf16 (Arm)"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()
