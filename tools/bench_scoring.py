"""`python -m tools.bench_scoring`: scoring memory must not grow with the number of images.

Writes an accuracy log of N synthetic images (default 1024 x 1024, LoadGen's format) for each count in
`--counts` (default 100 and 400), scores each in a fresh process with the stand-in scorer (the exact
CLIP ViT-B-32 and FID InceptionV3 architectures, seeded random weights), and prints per count: log size,
peak resident memory of the scoring process, images per second while streaming, and the time of the
one-off FID matrix square root. The last line is `ratio=<peak(max count) / peak(min count)>`; the run
fails (exit 1) when it is above `--max-ratio` (1.2).

This is a benchmark, not a test: about 10 minutes on a 2-core CPU and 3 GB of disk for 100 + 400 images.

`python -m tools.bench_scoring --reader`: the accuracy-log reader alone (decode + SHA-256, what scoring
reads before any model runs), in MB/s of log, for each decoder (the Python parser and the native one,
harness_native._accuracy_log) on generated logs of `--reader-images` images (default 40 and 320 at
1024 x 1024: 0.25 GB and 2 GB). Each read runs in a fresh process (its peak RSS shows whether memory
stays flat with the log's size); the logs go to a temporary folder and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CAPTIONS = (
    "A city at night with people walking around.",
    "The large clock was prominently displaying the time.",
    "A woman is picking bananas from a basket.",
    "A man riding on the back of a motorcycle with a woman.",
)


def _images(count: int, size: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    from accuracy.standins import synthetic_images

    for i in range(count):
        yield i, synthetic_images(1, size, seed + i)[0]


def _child(args: argparse.Namespace) -> int:
    """Score one log in this process and print a JSON line with the figures."""
    import torch

    from accuracy.scorer import ScorerSpec, score_log
    from accuracy.standins import ensure_standin_files
    from harness.run.manifest import cache_dir

    torch.set_num_threads(os.cpu_count() or 1)
    files = ensure_standin_files(cache_dir() / "accuracy-standins")
    spec = ScorerSpec(
        height=args.size,
        width=args.size,
        clip_weights=files.clip_weights,
        inception_weights=files.inception_weights,
        fid_stats=files.fid_stats,
        standin=True,
        fid_method=args.fid_method,
        batch_size=args.batch_size,
    )
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(args.count)]
    scores = score_log(args.child, captions, spec)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "count": scores.count,
                "peak_rss_mib": peak_kib / 1024,
                "seconds": scores.seconds,
                "images_per_s_streaming": scores.count / scores.seconds["stream"],
                "CLIP_SCORE": scores.clip_score,
                "FID_SCORE": scores.fid_score,
            }
        )
    )
    return 0


# The reader benchmark (--reader) -----------------------------------------------------------------------
def _reader_child(args: argparse.Namespace) -> int:
    """Read one log with one decoder in this process and print a JSON line with the figures."""
    from accuracy.log_reader import AccuracyLogReader

    reader = AccuracyLogReader(args.reader_child, args.size, args.size, decoder=args.decoder)
    start, cpu_start = time.perf_counter(), time.process_time()
    count = sum(1 for _ in reader)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start  # CPU: all threads
    stats = reader.stats
    row = {
        "decoder": stats.decoder,
        "python_from_byte": stats.python_from_byte,
        "images": count,
        "seconds": seconds,
        "mb_per_s": stats.size_bytes / seconds / 1e6,
        "cpu_s_per_gb": cpu_seconds / (stats.size_bytes / 1e9),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sha256": stats.sha256,
    }
    print(json.dumps(row))
    return 0


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = ", ".join(f for f in ("avx2", "avx512f", "sha_ni") if f in flags) or "none of avx2/avx512f/sha_ni"
    return f"{cpu}, {os.cpu_count()} CPUs ({simd}), {platform.system()} {platform.release()}"


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _random_images(count: int, size: int) -> Iterator[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(count)
    for i in range(count):
        yield i, rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def _reader_main(args: argparse.Namespace) -> int:
    import ssl

    from accuracy._native_log import native_module
    from accuracy.log_reader import write_accuracy_log

    native = native_module()
    decoders = list(args.decoders)
    if "native" in decoders and native.module is None:
        print(f"error: --decoders native: {native.reason} (pip install -e . builds it)", file=sys.stderr)
        return 2
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-reader-"))
    work.mkdir(parents=True, exist_ok=True)
    need = max(args.reader_images) * args.size * args.size * 6 + (1 << 30)
    free = shutil.disk_usage(work).free
    if free < need:
        print(f"error: {work} has {free >> 30} GiB free; the largest log needs about {need >> 30} GiB", file=sys.stderr)
        return 2
    print(f"machine: {_machine()}")
    print(f"python {platform.python_version()}, {ssl.OPENSSL_VERSION}; load average before: {_load()}")
    if native.module is not None:
        print(f"native decoder: {native.module.__file__} (AVX2 {'on' if native.module.uses_avx2 else 'off'})")
    rows: list[dict] = []
    try:
        for count in args.reader_images:
            log = work / f"mlperf_log_accuracy_{count}.json"
            start = time.perf_counter()
            write_accuracy_log(log, _random_images(count, args.size))
            with log.open("rb") as f:
                os.fsync(f.fileno())  # the log's writeback is done before the timed reads start
            size = log.stat().st_size
            print(f"wrote {log.name}: {count} images, {size / 1e9:.2f} GB ({time.perf_counter() - start:.0f} s)")
            digests = set()
            for decoder in decoders:
                for rep in range(args.repeats):
                    cmd = [sys.executable, "-m", "tools.bench_scoring", "--reader-child", str(log)]
                    cmd += ["--decoder", decoder, "--size", str(args.size)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode != 0:
                        print(proc.stderr[-3000:], file=sys.stderr)
                        return 1
                    row = json.loads(proc.stdout.strip().splitlines()[-1])
                    row.update(log_gb=size / 1e9, repeat=rep, load=_load())
                    rows.append(row)
                    digests.add(row["sha256"])
                    print(
                        f"  {decoder:>6} #{rep + 1}: {row['mb_per_s']:7.0f} MB/s  {row['seconds']:6.2f} s  "
                        f"CPU {row['cpu_s_per_gb']:4.2f} s/GB  "
                        f"peak RSS {row['peak_rss_mib']:5.0f} MiB  load {row['load']}"
                    )
            if len(digests) != 1:
                print(f"FAIL: the decoders disagree on the SHA-256 of {log.name}: {sorted(digests)}", file=sys.stderr)
                return 1
            log.unlink()
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    print(
        f"\naccuracy-log reader, {args.size} x {args.size} images, decode + SHA-256, best and median of {args.repeats}"
    )
    print(
        f"{'images':>7} {'log GB':>7} {'decoder':>8} {'best MB/s':>10} {'median MB/s':>12} {'CPU s/GB':>9} "
        f"{'peak RSS MiB':>13}"
    )
    best: dict[tuple[int, str], float] = {}
    for count in args.reader_images:
        for decoder in decoders:
            mine = [r for r in rows if r["images"] == count and r["decoder"] == decoder]
            speeds = sorted(r["mb_per_s"] for r in mine)
            best[count, decoder] = speeds[-1]
            print(
                f"{count:>7} {mine[0]['log_gb']:>7.2f} {decoder:>8} {speeds[-1]:>10.0f} "
                f"{statistics.median(speeds):>12.0f} {statistics.median(r['cpu_s_per_gb'] for r in mine):>9.2f} "
                f"{max(r['peak_rss_mib'] for r in mine):>13.0f}"
            )
        if len(decoders) == 2:
            print(f"{'':>16} native / python: {best[count, 'native'] / best[count, 'python']:.1f}x")
    print(f"load average after: {_load()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.bench_scoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", type=int, nargs="+", default=[100, 400])
    p.add_argument("--size", type=int, default=1024, help="image height and width")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--fid-method", choices=("pytorch-fid", "eigen"), default="pytorch-fid")
    p.add_argument("--max-ratio", type=float, default=1.2)
    p.add_argument("--workdir", help="where the logs go (default: a temporary folder, removed afterwards)")
    p.add_argument("--reader", action="store_true", help="benchmark the accuracy-log reader alone (MB/s)")
    p.add_argument("--reader-images", type=int, nargs="+", default=[40, 320], help="images per log (--reader)")
    p.add_argument("--decoders", nargs="+", choices=("python", "native"), default=["python", "native"])
    p.add_argument("--repeats", type=int, default=3, help="reads per decoder and log (--reader)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--reader-child", help=argparse.SUPPRESS)
    p.add_argument("--decoder", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return _child(args)
    if args.reader_child:
        return _reader_child(args)
    if args.reader:
        if min(args.reader_images) < 1 or args.repeats < 1 or args.size < 1:
            print("error: --reader-images, --repeats and --size must be at least 1", file=sys.stderr)
            return 2
        return _reader_main(args)
    from accuracy.log_reader import write_accuracy_log

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    work.mkdir(parents=True, exist_ok=True)
    need = sum(args.counts) * args.size * args.size * 6 + (1 << 30)
    free = shutil.disk_usage(work).free
    if free < need:
        print(f"error: {work} has {free >> 30} GiB free; the logs need about {need >> 30} GiB", file=sys.stderr)
        return 2
    rows = []
    try:
        for count in args.counts:
            log = work / f"mlperf_log_accuracy_{count}.json"
            start = time.perf_counter()
            write_accuracy_log(log, _images(count, args.size, seed=count))
            size_gb, took = log.stat().st_size / 1e9, time.perf_counter() - start
            print(f"wrote {log.name}: {count} images, {size_gb:.2f} GB ({took:.0f} s)")
            cmd = [sys.executable, "-m", "tools.bench_scoring", "--child", str(log), "--count", str(count)]
            cmd += ["--size", str(args.size), "--batch-size", str(args.batch_size), "--fid-method", args.fid_method]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["log_gb"] = log.stat().st_size / 1e9
            rows.append(row)
            log.unlink()
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nstand-in scorer, {args.size} x {args.size} images, batch {args.batch_size}, fid_method {args.fid_method}, "
        f"{os.cpu_count()} CPUs, torch threads = CPUs"
    )
    print(
        f"{'images':>7} {'log GB':>7} {'peak RSS MiB':>13} {'images/s':>9} {'stream s':>9} {'FID s':>7} {'total s':>8}"
    )
    for r in rows:
        s = r["seconds"]
        print(
            f"{r['count']:>7} {r['log_gb']:>7.2f} {r['peak_rss_mib']:>13.0f} {r['images_per_s_streaming']:>9.2f} "
            f"{s['stream']:>9.1f} {s['fid']:>7.1f} {s['total']:>8.1f}"
        )
    low, high = min(rows, key=lambda r: r["count"]), max(rows, key=lambda r: r["count"])
    ratio = high["peak_rss_mib"] / low["peak_rss_mib"]
    verdict = "ok" if ratio <= args.max_ratio else f"FAIL: above {args.max_ratio}"
    print(f"peak memory {high['count']} / {low['count']} images: {verdict}")
    print(f"ratio={ratio:.3f}")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
