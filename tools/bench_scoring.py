"""`python -m tools.bench_scoring`: scoring memory must not grow with the number of images.

Writes an accuracy log of N synthetic images (default 1024 x 1024, LoadGen's format) for each count in
`--counts` (default 100 and 400), scores each in a fresh process with the stand-in scorer (the exact
CLIP ViT-B-32 and FID InceptionV3 architectures, seeded random weights), and prints per count: log size,
peak resident memory of the scoring process, images per second while streaming, and the time of the
one-off FID matrix square root. The last line is `ratio=<peak(max count) / peak(min count)>`; the run
fails (exit 1) when it is above `--max-ratio` (1.2).

This is a benchmark, not a test: about 10 minutes on a 2-core CPU and 3 GB of disk for 100 + 400 images.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.bench_scoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", type=int, nargs="+", default=[100, 400])
    p.add_argument("--size", type=int, default=1024, help="image height and width")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--fid-method", choices=("pytorch-fid", "eigen"), default="pytorch-fid")
    p.add_argument("--max-ratio", type=float, default=1.2)
    p.add_argument("--workdir", help="where the logs go (default: a temporary folder, removed afterwards)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return _child(args)
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
