"""What bfloat16 costs on this CPU: a square matmul in float32 and in bfloat16, one torch thread, in
fresh processes: as the machine is, and held to AVX2 (oneDNN, torch's kernels and MKL, through
`ONEDNN_MAX_CPU_ISA`, `ATEN_CPU_CAPABILITY`, `MKL_ENABLE_INSTRUCTIONS`), which is what torch meets on a
CPU without AVX-512: no oneDNN bfloat16 kernels.

    python -m tools.bf16_cost [--size 1024] [--rounds 3]

Each line: the condition, whether backends/cpu_bf16.py calls bfloat16 fast there, the median time per
matmul in each dtype, and `slowdown=<bf16/fp32>`. backends/cpu_bf16.py quotes the AVX2 slowdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# Held to AVX2: oneDNN, torch's own kernels and MKL alike, as on a CPU without AVX-512.
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
CONDITIONS = {"as is": {}, "held to AVX2": AVX2}


def _child(size: int, rounds: int) -> dict[str, object]:
    import torch

    from backends.cpu_bf16 import cpu_bf16_is_fast

    torch.set_num_threads(1)  # one core: the figure is the kernel's, not the machine's share of cores
    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    pairs = {name: torch.randn(size, size).to(getattr(torch, name)) for name in times}
    for a in pairs.values():
        a @ a  # warm-up: the first call picks and prepares the kernel
    for _ in range(rounds):  # alternate, so that a load change on the machine hits both dtypes alike
        for name, a in pairs.items():
            start = time.perf_counter_ns()
            a @ a
            times[name].append((time.perf_counter_ns() - start) / 1e6)
    fast, how = cpu_bf16_is_fast()
    return {
        "fast": fast,
        "how": how,
        "capability": torch.backends.cpu.get_cpu_capability(),
        **{f"{name}_ms": statistics.median(t) for name, t in times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bf16_cost", description=__doc__)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.size < 1 or args.rounds < 1:
        print(f"error: --size {args.size} and --rounds {args.rounds} must be >= 1", file=sys.stderr)
        return 2
    if args.child:
        print(json.dumps(_child(args.size, args.rounds)))
        return 0
    for label, extra in CONDITIONS.items():
        cmd = [sys.executable, "-m", "tools.bf16_cost", "--child", f"--size={args.size}", f"--rounds={args.rounds}"]
        out = subprocess.run(cmd, env={**os.environ, **extra}, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{label}: bf16 fast={r['fast']} ({r['how']}; torch {r['capability']}), {args.size} x {args.size} matmul: "
            f"float32 {r['float32_ms']:.2f} ms, bfloat16 {r['bfloat16_ms']:.2f} ms, "
            f"slowdown={r['bfloat16_ms'] / r['float32_ms']:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
