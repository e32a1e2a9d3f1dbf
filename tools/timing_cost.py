"""What stage timing costs: LoadGen Offline throughput with `backend.stage_timing` off and on,
alternating, in one process (two loaded backends, same model, batch size and samples).

    python -m tools.timing_cost [--model tiny] [--batch-size 8] [--samples 128] [--rounds 2]

The last line is `ratio=<on/off>` (1.0 = timing costs nothing; the target is >= 0.98).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

from harness.config import resolve_config
from harness.errors import HarnessError
from harness.loadgen.logs import read_detail_log
from harness.loadgen.settings import build_test_settings
from harness.run.benchmark import drive_loadgen
from harness.run.model import batch_policy, direct_batch, make_backend, prepare_inputs
from harness.sut.batcher import Batcher
from harness.sut.python_sut import SystemUnderTest
from harness.workers.in_process import InProcessWorker


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.timing_cost", description=__doc__)
    p.add_argument("--model", default="tiny")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sets = [
        f"sut.batch_size={args.batch_size}",
        f"loadgen.min_query_count={args.samples}",
        "loadgen.min_duration_ms=1",
        "loadgen.offline_expected_qps=1",
    ]
    try:
        configs = {
            flag: resolve_config(args.model, None, {"run.scenario": "Offline"}, [*sets, f"backend.stage_timing={flag}"])
            for flag in ("false", "true")
        }
        inputs = prepare_inputs(configs["false"])
        backends = {flag: make_backend(cfg, inputs.spec) for flag, cfg in configs.items()}
        warm = direct_batch(inputs.prompts, inputs.latents, list(range(min(args.batch_size, inputs.qsl.total_count))))
        for b in backends.values():
            b.load()
            b.warmup(warm)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    results: dict[str, list[float]] = {"false": [], "true": []}
    for r in range(args.rounds):
        for flag, cfg in configs.items():
            with tempfile.TemporaryDirectory(prefix="timing-cost-") as tmp:
                sut = SystemUnderTest(inputs.qsl, Batcher(batch_policy(cfg)), [InProcessWorker(backends[flag])])
                drive_loadgen(cfg, sut, inputs.qsl, build_test_settings(cfg), Path(tmp), progress=None)
                sps = read_detail_log(Path(tmp) / "mlperf_log_detail.txt").samples_per_second("Offline")
                if sut.failure is not None or sps is None:
                    print(f"error: the run with stage_timing={flag} failed: {sut.failure}", file=sys.stderr)
                    return 1
                results[flag].append(sps)
        print(f"round {r + 1}: timing off {results['false'][-1]:.3f}, on {results['true'][-1]:.3f} samples/s")
    off, on = statistics.median(results["false"]), statistics.median(results["true"])
    print(f"timing_off_samples_per_s={off:.3f}")
    print(f"timing_on_samples_per_s={on:.3f}")
    print(f"ratio={on / off:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
