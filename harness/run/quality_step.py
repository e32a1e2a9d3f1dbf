"""Quality beyond the accuracy gate (issue 6): LPIPS diversity, how different one prompt's images are
across seeds. Accuracy mode only, with `quality.diversity_seeds > 0`.

Three steps, around the run:
1. `prepare` (before the model loads): the LPIPS weights file is there and the settings make sense, so
   a missing file stops the run at once (one line, exit code 2) rather than after generation.
2. `generate` (after LoadGen, while the workers are still loaded, off LoadGen's clock): for each of
   `quality.diversity_prompts` prompts (the first prompt of each category first), one image per seed
   index s = 0 .. diversity_seeds-1, from the latent seeded with `latents.seed + s` (seed index 0 is
   the run's own latent when latents are seeded and shared). Written as PNGs under images/diversity/.
3. `score` (after the accuracy step): the mean pairwise LPIPS distance of each prompt's images
   (accuracy/lpips_diversity.py), the mean over prompts and per category, into quality.json and
   summary["quality"].
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import BackendError, PromptBatch
from harness.config import RunConfig
from harness.data.latents import LatentSource
from harness.data.prompts import PromptSet
from harness.errors import ConfigError
from harness.run.manifest import cache_dir
from harness.run.run_dir import write_json
from harness.workers.in_process import Worker
from harness.workers.process_pool import RemoteError, WorkerDied

log = logging.getLogger(__name__)

QUALITY_JSON = "quality.json"
DIVERSITY_DIR = Path("images") / "diversity"
STANDIN = "standin"
LPIPS_STANDIN_NOTE = (
    "stand-in LPIPS: seeded random AlexNet trunk (the calibrated linear layers are the real ones); "
    "the distances are deterministic but say nothing about perceptual diversity"
)


@dataclass(frozen=True)
class QualityPlan:
    lpips_weights: Path
    standin: bool
    seeds: int  # images per prompt
    prompt_indices: tuple[int, ...]  # QSL sample indices of the prompts that get those seeds
    prompts: PromptSet
    latent_shape: tuple[int, int, int]
    latent_seed: int  # seed index s uses latents seeded with latent_seed + s
    batch_size: int  # images per worker call: the largest batch the SUT sends
    device: str  # where LPIPS runs: accuracy.device


@dataclass(frozen=True)
class DiversityImages:
    """What `generate` wrote: per prompt, the PNGs (relative to the run directory), seed index order."""

    plan: QualityPlan
    files: tuple[tuple[str, ...], ...] = ()
    error: str = ""
    seconds: float = 0.0


def diversity_indices(categories: Sequence[str], count: int, limit: int) -> list[int]:
    """The first prompt of each category (in order of appearance), then the others in index order;
    the first `limit` of those, among the first `count` prompts."""
    seen: set[str] = set()
    firsts: list[int] = []
    for i in range(min(count, len(categories))):
        if categories[i] not in seen:
            seen.add(categories[i])
            firsts.append(i)
    chosen = set(firsts)
    rest = [i for i in range(min(count, len(categories))) if i not in chosen]
    return (firsts + rest)[:limit]


def prepare(
    cfg: RunConfig, prompts: PromptSet, sample_count: int, latent_shape: tuple[int, int, int], batch_size: int
) -> QualityPlan | None:
    """Check what the diversity step will need; None when it is off (diversity_seeds 0, or not accuracy mode)."""
    q = cfg.quality
    if q.diversity_seeds == 0:
        return None
    if cfg.run.mode != "accuracy":
        log.warning(
            "quality: quality.diversity_seeds is %d but this is a %s run; LPIPS diversity runs in "
            "accuracy mode only (--mode accuracy)",
            q.diversity_seeds,
            cfg.run.mode,
        )
        return None
    if q.diversity_seeds < 2:
        raise ConfigError(
            f"quality.diversity_seeds must be 0 (off) or at least 2 (LPIPS compares pairs), got {q.diversity_seeds}"
        )
    if cfg.model.weights == "random":
        raise ConfigError(
            f"LPIPS diversity needs trained weights, but model.weights is 'random' (model {cfg.model.name!r}): "
            "its images are noise; use --set model.weights=pretrained, or --set quality.diversity_seeds=0"
        )
    try:
        import lpips  # noqa: F401  the `accuracy` extra

        from accuracy.errors import AccuracyError
        from accuracy.lpips_diversity import ALEXNET_FILENAME, check_lpips_weights
        from accuracy.scorer import check_device
    except ImportError as exc:
        raise ConfigError(
            f"LPIPS diversity needs the accuracy extra ({exc.name or exc} is missing): pip install -e '.[accuracy]', "
            "or --set quality.diversity_seeds=0"
        ) from exc
    from accuracy.assets import default_asset_dir
    from accuracy.standins import ensure_standin_alexnet

    standin = q.lpips_weights == STANDIN
    if standin:
        weights = ensure_standin_alexnet(cache_dir() / "accuracy-standins")
        log.warning("quality: LPIPS with a stand-in AlexNet (seeded random): the diversity numbers are meaningless")
    elif q.lpips_weights:
        weights = Path(q.lpips_weights).expanduser()
    else:
        weights = default_asset_dir(cache_dir()) / ALEXNET_FILENAME
    try:
        check_lpips_weights(weights)
        check_device(cfg.accuracy.device)
    except AccuracyError as exc:
        raise ConfigError(str(exc)) from exc
    indices = diversity_indices(prompts.categories, sample_count, q.diversity_prompts)
    return QualityPlan(
        lpips_weights=weights,
        standin=standin,
        seeds=q.diversity_seeds,
        prompt_indices=tuple(indices),
        prompts=prompts,
        latent_shape=latent_shape,
        latent_seed=cfg.latents.seed,
        batch_size=batch_size,
        device=cfg.accuracy.device,
    )


def generate(plan: QualityPlan, workers: Sequence[Worker], run_dir: Path) -> DiversityImages:
    """Generate prompts x seeds images through the first (loaded) worker and save them as PNGs."""
    from PIL import Image

    start = time.perf_counter()
    folder = run_dir / DIVERSITY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    latents = LatentSource(plan.latent_shape, "per-sample", seed=plan.latent_seed)
    latents.preload(range(plan.seeds))
    jobs = [(idx, s) for idx in plan.prompt_indices for s in range(plan.seeds)]
    p = plan.prompts
    for at in range(0, len(jobs), plan.batch_size):
        chunk = jobs[at : at + plan.batch_size]
        batch = PromptBatch(
            sample_indices=tuple(idx for idx, _ in chunk),
            prompts=tuple(p.texts[idx] for idx, _ in chunk),
            negative_prompts=tuple(p.negative_prompts[idx] for idx, _ in chunk),
            latents=latents.for_samples([s for _, s in chunk]),
        )
        try:
            images = workers[0].run(batch).images
        except (BackendError, RemoteError, WorkerDied) as exc:
            log.error("quality: generating the diversity images failed: %s", exc)
            return DiversityImages(plan, error=f"generating the diversity images failed: {exc}")
        for (idx, s), img in zip(chunk, images, strict=True):
            Image.fromarray(img).save(folder / _png_name(idx, s))
    files = tuple(
        tuple(str(DIVERSITY_DIR / _png_name(idx, s)) for s in range(plan.seeds)) for idx in plan.prompt_indices
    )
    return DiversityImages(plan, files, seconds=round(time.perf_counter() - start, 3))


def _png_name(sample_index: int, seed_index: int) -> str:
    return f"sample_{sample_index:05d}_seed_{seed_index:02d}.png"


def score(images: DiversityImages, run_dir: Path) -> dict[str, Any]:
    """LPIPS diversity of the generated images -> quality.json; what goes into summary["quality"]."""
    plan = images.plan
    if images.error:
        return {"error": images.error}
    from PIL import Image

    from accuracy.errors import AccuracyError
    from accuracy.lpips_diversity import LPIPS_NET, LpipsDiversity

    start = time.perf_counter()
    try:
        metric = LpipsDiversity.from_file(plan.lpips_weights, plan.device, batch_size=plan.batch_size)
        per_prompt: list[dict[str, Any]] = []
        for idx, files in zip(plan.prompt_indices, images.files, strict=True):
            stack = np.stack([np.asarray(Image.open(run_dir / f).convert("RGB")) for f in files])
            result = metric.mean_pairwise(stack)
            per_prompt.append(
                {
                    "prompt": plan.prompts.texts[idx],
                    "category": plan.prompts.categories[idx],
                    "qsl_idx": idx,
                    "mean": result.mean,
                    "pairs": result.pairs,
                    "images": list(files),
                }
            )
    except AccuracyError as exc:
        log.error("quality: %s", exc)
        return {"error": str(exc)}
    mean = float(np.mean([p["mean"] for p in per_prompt]))
    by_category: dict[str, list[float]] = {}
    for p in per_prompt:
        by_category.setdefault(p["category"], []).append(p["mean"])
    quality = {
        "lpips_diversity": {
            "mean": mean,
            "by_category": {cat: float(np.mean(values)) for cat, values in by_category.items()},
            "per_prompt": per_prompt,
            "seeds": plan.seeds,
            "latent_seeds": [plan.latent_seed + s for s in range(plan.seeds)],
            "net": LPIPS_NET,
            "weights": str(plan.lpips_weights),
            "standin": plan.standin,
            "note": LPIPS_STANDIN_NOTE if plan.standin else "",
            "seconds": {"generate": images.seconds, "score": round(time.perf_counter() - start, 3)},
        },
        "files": [QUALITY_JSON],
    }
    write_json(run_dir / QUALITY_JSON, quality)
    log.info(
        "quality: LPIPS diversity %.4f over %d prompts x %d seeds%s",
        mean,
        len(per_prompt),
        plan.seeds,
        " (stand-in AlexNet: meaningless)" if plan.standin else "",
    )
    return quality
