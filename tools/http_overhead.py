"""What the HTTP path costs: the same model in-process and through `python -m harness serve` on this machine.

    python -m tools.http_overhead [--model tiny] [--backend diffusers-eager] [--rounds 1] [--server-qps Q]
                                  [--set key=value ...]

1. Offline samples/s: an in-process run (`--backend BACKEND`) and a run through a local server
   (`--backend http`, backend.response_format=raw), alternating for --rounds; the ratio of the medians
   (target: at least 0.95).
2. Server scenario at a QPS the model holds (--server-qps; default half the in-process Offline figure):
   LoadGen's p99 in-process and through the server, and the per-sample latency the HTTP path adds as the
   client measured it (client_other + client_decode: everything but the server's queue, generate and
   encode times, from its Server-Timing header; target: p99 at most 20 ms on loopback).

Every run is a child `python -m harness` (the server one too), so that they compete for this machine's cores
as a deployment's client and server would. The server batches as the in-process run does (sut.batch_size /
sut.max_batch_size, sut.max_wait_ms); the http client sends one request per sample, with
backend.concurrency requests in flight. The last lines are `offline_ratio=<value>` and
`http_path_p99_ms=<value>`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _run(out: Path, args: list[str]) -> dict[str, Any]:
    """One `python -m harness` run; its summary.json (raises with the run's stderr if it failed)."""
    before = set(out.iterdir()) if out.exists() else set()
    cmd = [sys.executable, "-m", "harness", "--output-dir", str(out), "--no-progress", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    made = sorted(p for p in set(out.iterdir()) - before if p.is_dir())
    if proc.returncode != 0 or not made:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return dict(json.loads((made[-1] / "summary.json").read_text()))


class _Server:
    """`python -m harness serve --port 0 ARGS` in a child process; ready when it prints its URL."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "harness", "serve", "--port", "0", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            lines = log_path.read_text(errors="replace").splitlines()
            urls = [line.strip() for line in lines if line.startswith("http://")]
            if urls:
                self.url = urls[0]
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"harness serve exited {self.process.returncode}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        self.close()
        raise TimeoutError("harness serve was not ready within 600 s")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.http_overhead", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="tiny")
    p.add_argument("--backend", default="diffusers-eager", help="what the server (and the in-process run) runs")
    p.add_argument("--rounds", type=int, default=1, help="alternating in-process / http Offline pairs")
    p.add_argument("--concurrency", type=int, default=16, help="backend.concurrency of the http runs")
    p.add_argument("--server-qps", type=float, default=0.0, help="Server scenario QPS; 0 = half the Offline figure")
    p.add_argument("--keep", metavar="DIR", help="keep the runs and the server's log in DIR (default: a temporary one)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="for every run")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.concurrency < 1 or args.server_qps < 0:
        print("error: --rounds and --concurrency must be >= 1 and --server-qps >= 0", file=sys.stderr)
        return 2
    sets = [x for s in args.sets for x in ("--set", s)]
    model = ["--model", args.model]
    local = [*model, "--backend", args.backend, *sets]
    with tempfile.TemporaryDirectory(prefix="http-overhead-") as tmp_dir:
        tmp = Path(args.keep) if args.keep else Path(tmp_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        out = tmp / "runs"
        server = _Server([*model, "--backend", args.backend, *sets], tmp / "serve.log")
        try:
            url = server.url
            remote = [
                *model,
                "--backend",
                "http",
                *sets,
                "--set",
                f"backend.url={url}",
                "--set",
                "backend.response_format=raw",
                "--set",
                f"backend.concurrency={args.concurrency}",
            ]
            print(f"server: {url} ({args.model}, {args.backend}); cores: {os.cpu_count()}", flush=True)
            # 1. Offline throughput, alternating.
            offline: dict[str, list[float]] = {"in-process": [], "http": []}
            for i in range(args.rounds):
                for name, run_args in (("in-process", local), ("http", [*remote, "--set", "sut.batch_size=1"])):
                    s = _run(out, [*run_args, "--scenario", "Offline"])
                    offline[name].append(float(s["samples_per_second"]))
                    print(f"round {i + 1} Offline {name}: {s['samples_per_second']:.3f} samples/s", flush=True)
            local_sps = statistics.median(offline["in-process"])
            http_sps = statistics.median(offline["http"])
            ratio = http_sps / local_sps
            # 2. Server scenario at a QPS the model holds.
            qps = args.server_qps or round(local_sps / 2, 2)
            server_sets = ["--scenario", "Server", "--set", f"loadgen.server_target_qps={qps}"]
            s_local = _run(out, [*local, *server_sets])
            s_http = _run(out, [*remote, *server_sets, "--set", "sut.max_batch_size=1", "--set", "sut.max_wait_ms=0"])
        finally:
            server.close()
    p99_local, p99_http = s_local["latency_ms"].get("p99"), s_http["latency_ms"].get("p99")
    split = s_http["endpoint"]["latency_split_ms"]
    path_p99 = split["client_other"]["p99"] + split.get("client_decode", {}).get("p99", 0.0)
    print(f"Offline samples/s (median of {args.rounds}): in-process {local_sps:.3f}, http {http_sps:.3f}")
    print(f"Server at {qps} QPS: LoadGen p99 in-process {p99_local:.1f} ms, http {p99_http:.1f} ms")
    print(
        "Server http per-sample split p99 ms: "
        + ", ".join(f"{part} {values['p99']:.2f}" for part, values in split.items())
        + f"; http valid: {s_http['loadgen']['result_validity']}, in-process valid: "
        f"{s_local['loadgen']['result_validity']}; responses by status: {s_http['endpoint']['responses_by_status']}"
    )
    print(f"offline_ratio={ratio:.3f}")
    print(f"http_path_p99_ms={path_p99:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
