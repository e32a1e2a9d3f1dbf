"""What LoadGen and the SUT cost: the same backend and batch size as a raw loop and through LoadGen
Offline, alternating, in one process with one loaded backend.

    python -m tools.overhead [--model tiny] [--backend diffusers-eager] [--batch-size 8]
                             [--samples 128] [--rounds 2] [--set key=value ...]

Prints each round's throughputs, then the medians and their ratio; the last line is `ratio=<value>`
(LoadGen throughput / raw-loop throughput; 1.0 means the harness costs nothing).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
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
    p = argparse.ArgumentParser(prog="python -m tools.overhead", description=__doc__)
    p.add_argument("--model", default="tiny")
    p.add_argument("--backend", default=None, help="default: the model config's")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--samples", type=int, default=128, help="samples per measurement")
    p.add_argument("--rounds", type=int, default=2, help="alternating raw/LoadGen rounds")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    n, b = args.samples, args.batch_size
    try:
        cfg = resolve_config(
            args.model,
            None,
            {"run.backend": args.backend, "run.scenario": "Offline", "run.mode": "performance"},
            [
                f"sut.batch_size={b}",
                f"loadgen.min_query_count={n}",
                "loadgen.min_duration_ms=1",
                "loadgen.offline_expected_qps=1",
                "loadgen.max_query_count=0",
                *args.sets,
            ],
        )
        inputs = prepare_inputs(cfg)
        qsl = inputs.qsl
        if qsl.total_count < 1:
            raise HarnessError("the prompt source is empty")
        backend = make_backend(cfg, inputs.spec)
        backend.load()
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    indices = [i % qsl.total_count for i in range(n)]
    batches = [direct_batch(inputs.prompts, inputs.latents, indices[i : i + b]) for i in range(0, n, b)]
    backend.warmup(batches[0])
    print(
        f"model={cfg.model.name} backend={cfg.run.backend} batch_size={b} samples={n} "
        f"rounds={args.rounds} backend_info={backend.describe().get('num_threads', '-')} threads"
    )

    raw: list[float] = []
    via_loadgen: list[float] = []
    for r in range(args.rounds):
        start = time.perf_counter()
        for batch in batches:
            backend.generate(batch)
        raw.append(n / (time.perf_counter() - start))

        with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
            settings = build_test_settings(cfg)
            sut = SystemUnderTest(qsl, Batcher(batch_policy(cfg)), [InProcessWorker(backend)])
            outcome = drive_loadgen(cfg, sut, qsl, settings, Path(tmp), progress=None)
            if sut.failure is not None or outcome.loadgen_alive:
                print(f"error: LoadGen run failed: {sut.failure}", file=sys.stderr)
                return 1
            detail = read_detail_log(Path(tmp) / "mlperf_log_detail.txt")
            sps = detail.samples_per_second("Offline")
            if sps is None or sut.stats.completed != n:
                print(f"error: LoadGen ran {sut.stats.completed} of {n} samples", file=sys.stderr)
                return 1
            via_loadgen.append(sps)
        print(f"round {r + 1}: raw loop {raw[-1]:.3f} samples/s, LoadGen Offline {sps:.3f} samples/s")

    backend.close()
    raw_m, lg_m = statistics.median(raw), statistics.median(via_loadgen)
    print(f"raw_loop_samples_per_s={raw_m:.3f}")
    print(f"loadgen_offline_samples_per_s={lg_m:.3f}")
    print(f"ratio={lg_m / raw_m:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
