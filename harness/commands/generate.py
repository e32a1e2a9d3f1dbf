"""`python -m harness generate --prompts FILE --out DIR`: offline generation at scale with Ray Data.

Each row carries everything that decides its image (prompt, negative prompt, and the latent's seed:
`latents.seed + sample index`), so an image never depends on which actor made it. One actor per GPU
of the cluster (`map_batches` with an actor pool, num_gpus=1 each), or `--workers N` CPU actors.
Writes DIR/images/<index>.png and DIR/metadata.csv + metadata.json (prompt, sample index, seed,
category, worker, batch size, generation time), ready for the accuracy tools.

No LoadGen here: this is a throughput job, not a scenario.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.commands._shared import fail
from harness.errors import HarnessError

PROGRESS_EVERY_S = 10.0
METADATA_COLUMNS = [
    "sample_index",
    "prompt",
    "negative_prompt",
    "category",
    "seed",
    "file",
    "worker",
    "batch_size",
    "generate_ms",
]


class _Generator:
    """A Ray Data actor: loads the backend once, then turns batches of rows into PNG files."""

    def __init__(self, backend: str, model: Any, options: Any, latent_shape: tuple[int, int, int], out: str) -> None:
        from backends.registry import create_backend

        self.backend = create_backend(backend, model, options)
        self.backend.load()
        self.latent_shape = latent_shape
        self.out = Path(out)
        self.worker = f"pid-{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image

        from backends.base import PromptBatch
        from harness.data.latents import seeded_latents

        indices = [int(i) for i in batch["sample_index"]]
        latents = np.concatenate([seeded_latents((1, *self.latent_shape), int(s)) for s in batch["seed"]])
        start = time.perf_counter_ns()
        images = self.backend.generate(
            PromptBatch(
                sample_indices=tuple(indices),
                prompts=tuple(str(p) for p in batch["prompt"]),
                negative_prompts=tuple(str(p) for p in batch["negative_prompt"]),
                latents=latents,
            )
        ).images
        ms = (time.perf_counter_ns() - start) / 1e6
        files = []
        for i, img in zip(indices, images, strict=True):
            name = f"images/{i:05d}.png"
            Image.fromarray(img).save(self.out / name)
            files.append(name)
        n = len(indices)
        return {
            **batch,
            "file": np.array(files),
            "worker": np.array([self.worker] * n),
            "batch_size": np.full(n, n),
            "generate_ms": np.full(n, round(ms, 3)),
        }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness generate", description=__doc__)
    p.add_argument("--prompts", required=True, help="a prompt pack (.toml) or MLPerf captions (.tsv)")
    p.add_argument("--out", required=True, help="output folder (created; must be empty if it exists)")
    p.add_argument("--model", default="tiny")
    p.add_argument("--model-path", default=None)
    p.add_argument("--backend", default=None)
    p.add_argument("--workers", type=int, default=0, help="actors; default: one per GPU, else 1 CPU actor")
    p.add_argument("--ray", default="local", help="Ray address: local (default), auto, or ray://host:port")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--count", type=int, default=0, help="only the first N prompts (0 = all)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--ray-log-level",
        default=None,
        metavar="LEVEL",
        help="Ray's own log lines on stderr: DEBUG, INFO, WARNING or ERROR "
        "(default: $HARNESS_RAY_LOG_LEVEL, else ERROR)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _generate(args)
    except HarnessError as exc:
        return fail(str(exc))


def _generate(args: argparse.Namespace) -> int:
    from harness.config import resolve_config
    from harness.data.prompts import load_prompts
    from harness.run.model import latent_shape, make_backend, model_spec, resolve_model_path
    from harness.workers.ray_actors import init_ray, ray_log_level

    if args.batch_size < 1 or args.workers < 0 or args.count < 0:
        raise HarnessError("--batch-size must be >= 1, --workers and --count >= 0")
    log_level = ray_log_level(args.ray_log_level)
    cfg = resolve_config(args.model, None, {"run.backend": args.backend, "model.path": args.model_path}, args.sets)
    prompts = load_prompts(args.prompts, cfg.model.negative_prompt)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"--out {str(out)!r} is not empty; choose a new folder")
    spec = model_spec(cfg, resolve_model_path(cfg))
    options = make_backend(cfg, spec).options
    (out / "images").mkdir(parents=True, exist_ok=True)

    ray = init_ray(args.ray, log_level)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    on_gpu = gpus > 0 and str(getattr(options, "device", "cpu")).startswith("cuda")
    actors = args.workers or (gpus if on_gpu else 1)

    n = args.count or len(prompts)
    rows = [
        {
            "sample_index": i,
            "prompt": prompts.texts[i],
            "negative_prompt": prompts.negative_prompts[i],
            "category": prompts.categories[i],
            "seed": cfg.latents.seed + i,  # the latent travels with the row
        }
        for i in range(n)
    ]
    start = time.perf_counter()
    ds = ray.data.from_items(rows).map_batches(
        _Generator,
        fn_constructor_kwargs={
            "backend": cfg.run.backend,
            "model": spec,
            "options": options,
            "latent_shape": latent_shape(cfg),
            "out": str(out.resolve()),
        },
        batch_size=args.batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),  # `concurrency=` is deprecated since Ray 2.51
        num_gpus=1 if on_gpu else 0,
        num_cpus=1,
    )
    results = sorted(_collect(ds, n), key=lambda r: int(r["sample_index"]))
    wall_s = time.perf_counter() - start
    table = [{c: _plain(r[c]) for c in METADATA_COLUMNS} for r in results]
    with (out / "metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    meta = {
        "model": cfg.model.name,
        "backend": cfg.run.backend,
        "actors": actors,
        "images": len(table),
        "wall_s": round(wall_s, 3),
        "images_per_second": round(len(table) / wall_s, 3),
        "rows": table,
    }
    (out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"generated {len(table)} images with {actors} actor(s) in {wall_s:.1f} s "
        f"({len(table) / wall_s:.2f} images/s): {out}"
    )
    return 0


def _collect(ds: Any, total: int, every_s: float = PROGRESS_EVERY_S) -> list[dict[str, Any]]:
    """Every row of `ds`, with a plain progress line on stderr every `every_s` seconds (Ray Data's
    own progress lines are part of the logs kept quiet)."""
    rows: list[dict[str, Any]] = []
    start = last = time.perf_counter()
    for row in ds.iter_rows():
        rows.append(row)
        now = time.perf_counter()
        if now - last >= every_s:
            last = now
            print(f"generate: {len(rows)}/{total} images, {now - start:.0f} s", file=sys.stderr, flush=True)
    return rows


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
