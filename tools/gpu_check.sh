#!/usr/bin/env bash
# The command to run on the lent GPU machine, from the repository root, with `.whl` carried:
#
#     bash tools/gpu_check.sh [sdxl] [flux1024] [flux512] [slicing] [tests]    (no argument: all but slicing)
#
# Installs the carried wheels (diffusers, LoadGen and the few packages the GPU image lacks; fetch them
# here first with `../shared/device/wheels.sh torchao sqlalchemy`: torchao for the perf parts' float8,
# SQLAlchemy for the run history), prints the GPU and library versions, then measures,
# through the harness itself (LoadGen, the diffusers-eager backend, random weights built from
# configs/components/, bfloat16):
#   sdxl:  SDXL (MLPerf recipe) at 1024 x 1024, 20 steps: SingleStream at batch 1, the largest batch that
#          fits (python -m harness fit), Offline at that batch;
#   flux1024, flux512: FLUX.2-klein-4B at 1024 x 1024 / 512 x 512, 4 steps: the same (flux = both);
#   slicing: the largest SDXL batch that fits with backend.vae_slicing=true (is the VAE decode the limit?);
#   tests: the GPU tests (pytest -m gpu);
#   perf-sdxl, perf-flux (issue 20, the fast path): `harness compare` of eager against torch-compile (the GPU
#          recipe: fused QKV, channels-last, the VAE decoder compiled, inductor's cache in $PERF_CACHE) against
#          torch-compile with the denoiser in float8 (torchao, row-wise dynamic), Offline at
#          GPU_CHECK_PERF_BATCH_SDXL / _FLUX (defaults 8 and 16, below the fitted batches 40 and 34 so that
#          three backends fit a call; set the fitted batch when time allows) and SingleStream, with parity (PSNR,
#          max/mean difference against eager) and stage tables, on SDXL (MLPerf recipe, 1024, 20 steps) and
#          FLUX.2-klein-4B (1024, 4 steps), random weights, bfloat16. The inductor cache is packed into
#          $OUT/inductor-cache.tgz after the part; carried back as .gpu_cache/inductor-cache.tgz, the next call
#          unpacks it first, so its compiles load from the cache. Not yet run on a GPU: its time is not
#          measured; plan one call per model (limits 560 s each: GPU_CHECK_PERF_LIMIT).
#   GPU_CHECK_DRY_RUN=1 runs the perf parts on this CPU at tiny size (tiny model, float32, int8_dynamic in
#          place of float8, which needs an FP8 GPU): the same commands end to end, minutes instead of hours.
# Each part has its own time limit (timeout kills the part's whole process group) and writes its sweep
# into /tmp/issue5 as it goes: <sweep dir>/sweep.json (rows, fit), fit.csv, sweep.csv and every run's
# directory (a killed sweep leaves no sweep.json, but its finished runs' summary.json and fit.json stay).
# The device tool brings back only a few files and little folder depth, so after every part /tmp/issue5
# is packed into $OUT/issue5.tgz (a call stopped at its limit still returns the parts before); $OUT
# also gets gpu_env.log and one <part>.log each.
# Measured on an H100 (2026-11-26, benchmarks/results/issue5_h100_2026-11-26_largest_batch), with
# GPU_CHECK_SCENARIOS=Offline and PyTorch's own allocator default, under which both 1024 parts' full runs
# at the fitted batch ran out of memory and stepped down once: sdxl 221 s, flux1024 160 s, flux512 118 s,
# tests 26 s. Two calls of at most 600 s:
#     bash tools/gpu_check.sh sdxl flux1024      (limits 300 + 220 s)
#     bash tools/gpu_check.sh flux512 tests      (limits 240 + 60 s, while the machine is warm)
# GPU_CHECK_SCALE=0.5 halves every limit. GPU_CHECK_SCENARIOS=Offline skips the batch-1 SingleStream runs
# when their figures are already measured on the same kind of GPU.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

OUT="${OUT:-$PWD/gpu_check_out}"
RESULTS=/tmp/issue5
mkdir -p "$OUT" "$RESULTS"
export OUT
SCALE="${GPU_CHECK_SCALE:-1}"
limit() { python3 -c "print(max(30, int($1 * $SCALE)))"; }

if [ -z "${GPU_CHECK_SKIP_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "not installing .whl/*.whl (none, or GPU_CHECK_SKIP_WHEELS set): using the installed packages"
fi
export HARNESS_CACHE_DIR=/tmp/harness-cache PYTHONUNBUFFERED=1

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
for name in ("diffusers", "transformers", "mlperf_loadgen", "matplotlib"):
    try:
        mod = __import__(name)
        print(name, getattr(mod, "__version__", "?"), getattr(mod, "__file__", ""))
    except Exception as exc:  # noqa: BLE001
        print(name, "unavailable:", exc)
EOF
} 2>&1 | tee "$OUT/gpu_env.log"

# Short LoadGen runs: SingleStream for 10 s (at least 8 images); Offline issues two full batches (the sweep
# raises min_query_count to 2 x batch). offline_expected_qps=0.1 keeps LoadGen from asking for more.
COMMON=(--set model.weights=random --set backend.device=cuda --set backend.dtype=bfloat16
  --scenarios "${GPU_CHECK_SCENARIOS:-SingleStream,Offline}" --batch-sizes fit --max-batch 64
  --set loadgen.min_duration_ms=10000 --set loadgen.min_query_count=8 --set loadgen.offline_expected_qps=0.1
  --output-dir "$RESULTS")

part() {  # part NAME SECONDS COMMAND...
  local name="$1" seconds
  seconds="$(limit "$2")"
  shift 2
  echo "=== $name (limit ${seconds} s) ==="
  local start=$SECONDS
  timeout -k 10 "$seconds" "$@" 2>&1 | tee "$OUT/$name.log" | grep -v "^\s*$" | tail -25
  local code=${PIPESTATUS[0]}
  echo "$name: exit code $code after $((SECONDS - start)) s (124 or 137 = hit the limit)"
  [ "$code" -gt "$WORST" ] && WORST=$code
  return 0
}
WORST=0

pack() {  # one file comes back where a folder tree would be cut short; tar's 1 = a file changed while read
  find "$RESULTS" -name mlperf_log_detail.txt -size +1M -delete
  tar czf "$OUT/issue5.tgz.part" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"
  [ $? -le 1 ] && mv "$OUT/issue5.tgz.part" "$OUT/issue5.tgz"
}

# The fast path (issue 20): eager vs the compile recipe vs the recipe with the denoiser in float8.
PERF_CACHE=/tmp/harness-cache/inductor
if [ -f .gpu_cache/inductor-cache.tgz ]; then
  mkdir -p "$(dirname "$PERF_CACHE")" && tar xzf .gpu_cache/inductor-cache.tgz -C "$(dirname "$PERF_CACHE")" \
    && echo "inductor cache: unpacked .gpu_cache/inductor-cache.tgz"
fi
perf() {  # perf NAME MODEL RESOLUTION STEPS BATCH
  local name="$1" model="$2" res="$3" steps="$4" batch="$5" device=cuda dtype=bfloat16 quant=float8_dynamic
  # LoadGen needs min_duration_ms and, Offline, at least min_count samples (3 batches at least): about
  # 37 s of eager SDXL at batch 16 (1.3 images/s), and still 5 s at 3.5 images/s, the H100's bf16 floor.
  local weights=(--set model.weights=random) min_ms=5000 min_count=0
  if [ -n "${GPU_CHECK_DRY_RUN:-}" ]; then
    model=tiny res=64 steps=4 batch=4 device=cpu dtype=float32 quant=int8_dynamic weights=() min_ms=2000 min_count=96
  fi
  local recipe=(backend.fuse_qkv=true backend.channels_last=true backend.compile_vae=true
    "backend.cache_dir=$PERF_CACHE")
  local sets=() labels=()
  for s in "${recipe[@]}"; do labels+=(--backend-set "compiled:$s" --backend-set "$quant:$s"); done
  labels+=(--backend-set "$quant:backend.quantize=$quant")
  sets=("${weights[@]}" --set "backend.device=$device" --set "backend.dtype=$dtype"
    --set "model.height=$res" --set "model.width=$res" --set "model.steps=$steps"
    --set "loadgen.min_duration_ms=$min_ms"
    --output-dir "$RESULTS/$name")
  for scenario in ${GPU_CHECK_PERF_SCENARIOS:-Offline SingleStream}; do
    local extra=()
    local count=$((3 * batch > min_count ? 3 * batch : min_count))
    # Offline: the parity runs (2 samples each); SingleStream: 64 queries, what early stopping needs for its
    # 90th percentile, and no second parity check (same images as Offline's).
    extra=(--set loadgen.min_query_count=64 --parity-samples 0)
    [ "$scenario" = Offline ] && extra=(--set "sut.batch_size=$batch" --set "loadgen.min_query_count=$count"
      --set loadgen.offline_expected_qps=0.1 --parity-samples 2)
    part "${name}_$scenario" "${GPU_CHECK_PERF_LIMIT:-560}" python3 -m harness compare --model "$model" \
      --scenario "$scenario" --backends "diffusers-eager,compiled=torch-compile,$quant=torch-compile" \
      "${labels[@]}" "${sets[@]}" "${extra[@]}"
  done
  mkdir -p "$PERF_CACHE" && tar czf "$OUT/inductor-cache.tgz" -C "$(dirname "$PERF_CACHE")" "$(basename "$PERF_CACHE")"
}

PARTS=("$@")
[ ${#PARTS[@]} -eq 0 ] && PARTS=(sdxl flux1024 flux512 tests)
for p in "${PARTS[@]}"; do
  case "$p" in
    sdxl) part sdxl_1024 300 python3 -m harness sweep --model sdxl --resolutions 1024 --steps 20 "${COMMON[@]}" ;;
    flux1024 | flux)
      part flux2_klein_1024 220 python3 -m harness sweep --model flux2-klein-4b --resolutions 1024 --steps 4 "${COMMON[@]}"
      ;;&
    flux512 | flux)
      # About 0.5 GiB per image at 512: the limit is above 64 (135 without a memory cap on an H100).
      part flux2_klein_512 240 python3 -m harness sweep --model flux2-klein-4b --resolutions 512 --steps 4 "${COMMON[@]}" \
        --max-batch 256
      ;;
    slicing)
      part sdxl_1024_fit_vae_slicing 120 python3 -m harness fit --model sdxl --output-dir "$RESULTS/fit-vae-slicing" --max-batch 128 \
        --set model.weights=random --set backend.device=cuda --set backend.dtype=bfloat16 --set backend.vae_slicing=true ;;
    perf-sdxl) perf perf_sdxl sdxl 1024 20 "${GPU_CHECK_PERF_BATCH_SDXL:-8}" ;;
    perf-flux) perf perf_flux flux2-klein-4b 1024 4 "${GPU_CHECK_PERF_BATCH_FLUX:-16}" ;;
    tests) part gpu_tests 60 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_batch_fit.py tests/test_diffusers_eager.py ;;
    flux1024 | flux512 | flux) ;;
    *) echo "unknown part $p: choose from sdxl, flux1024, flux512 (flux: both), slicing, tests, perf-sdxl, perf-flux"
      exit 2 ;;
  esac
  pack || echo "packing $RESULTS failed: $OUT/issue5.tgz holds the parts before $p"
done

du -sh "$OUT"
exit "$WORST"  # the worst part's exit code (a sweep exits 1 when any of its points failed)
