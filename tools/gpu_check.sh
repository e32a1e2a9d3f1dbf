#!/usr/bin/env bash
# The one command to run on the lent GPU machine, from the repository root, with `.whl` carried:
#
#     bash tools/gpu_check.sh
#
# Installs the carried wheels (diffusers and the few packages the GPU image lacks; fetch them here
# first with `../shared/device/wheels.sh`), prints the GPU and library versions, then runs the
# benchmark (SDXL base 1.0, then FLUX.2-klein-4B; random weights from configs/components/) with a
# hard time limit. Results: $OUT/gpu_bench.json (written after every measurement) and the full log
# in $OUT/gpu_bench.log. Budget: about 8 minutes in all (install ~10 s, benchmark <= ~450 s).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

OUT="${OUT:-$PWD/gpu_bench_out}"
mkdir -p "$OUT"
export OUT

if [ -z "${GPU_CHECK_SKIP_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "not installing .whl/*.whl (none, or GPU_CHECK_SKIP_WHEELS set): using the installed packages"
fi

{
  echo "=== nvidia-smi ==="
  nvidia-smi || echo "nvidia-smi failed"
  echo "=== versions ==="
  python3 - <<'EOF'
import sys
import torch
print("python", sys.version.split()[0])
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
for name in ("diffusers", "transformers", "triton"):
    try:
        mod = __import__(name)
        print(name, mod.__version__, getattr(mod, "__file__", ""))
    except Exception as exc:  # noqa: BLE001
        print(name, "unavailable:", exc)
EOF
} 2>&1 | tee "$OUT/gpu_env.log"

echo "=== benchmark ==="
PYTHONUNBUFFERED=1 timeout 500 python3 -m tools.gpu_bench --out "$OUT" --budget-s 430 "$@" 2>&1 \
  | tee "$OUT/gpu_bench.log"
rc=${PIPESTATUS[0]}
echo "gpu_bench exit code: $rc (124 = hit the 500 s limit; partial results are in $OUT/gpu_bench.json)"

if [ -z "${GPU_CHECK_SKIP_HARNESS:-}" ]; then
  echo "=== harness smoke run on the GPU: tiny model, diffusers-eager, cuda, Offline ==="
  HARNESS_CACHE_DIR=/tmp/harness-cache PYTHONUNBUFFERED=1 timeout 120 python3 -m harness \
    --scenario Offline --set backend.device=cuda --output-dir /tmp/harness-runs --no-progress 2>&1 \
    | tail -40 | tee "$OUT/harness_gpu.log"
  cp /tmp/harness-runs/*/summary.json "$OUT/harness_gpu_summary.json" 2>/dev/null || true
fi
exit "$rc"
