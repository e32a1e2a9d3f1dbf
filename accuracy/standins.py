"""Stand-in scorer files for machines without the real ones: the exact open_clip ViT-B-32 (QuickGELU,
as the OpenAI weights) and pytorch-fid FID InceptionV3 architectures with seeded random weights, saved
with the real files' state-dict keys, plus FID statistics of seeded synthetic images. They load through
the same local-file path as the real weights (`load_clip_model`, `load_fid_inception`, `load_stats`).

The numbers a stand-in scorer gives are deterministic (same seed, same torch) but meaningless as image
quality: they serve the tiny model (no real weights exist on the development machines), the tests and
the scoring benchmark, and every report that uses them says so.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from accuracy.clip_score import CLIP_FILENAME, CLIP_MODEL
from accuracy.fid import FeatureStats, InceptionFeatures, load_fid_inception, save_stats

log = logging.getLogger(__name__)

STANDIN = "standin"  # the config value that selects a stand-in file
STANDIN_NOTE = (
    "stand-in scorer: seeded random CLIP and Inception weights and synthetic FID statistics; "
    "the scores are deterministic but say nothing about image quality"
)
RECIPE_VERSION = 2  # bump when what the builders make changes, so caches rebuild
STATS_IMAGES = 8
STATS_IMAGE_SIZE = 64


@dataclass(frozen=True)
class StandinFiles:
    clip_weights: Path
    inception_weights: Path
    fid_stats: Path


def _save_atomic(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def standin_clip_state_dict(seed: int = 0) -> dict[str, Any]:
    """A ViT-B-32 CLIP state dict with the keys, shapes and dtypes layout of OpenAI's ViT-B-32.pt."""
    import open_clip
    import torch
    from open_clip.model import CLIP, convert_weights_to_lp

    cfg = open_clip.get_model_config(CLIP_MODEL)
    torch.manual_seed(seed)
    model = CLIP(**cfg, quick_gelu=True)
    convert_weights_to_lp(model, torch.float16)  # the OpenAI checkpoint is partly float16, like this
    state = model.state_dict()
    # The OpenAI archive also carries these three; open_clip drops them when it loads.
    state["input_resolution"] = torch.tensor(cfg["vision_cfg"]["image_size"])
    state["context_length"] = torch.tensor(cfg["text_cfg"]["context_length"])
    state["vocab_size"] = torch.tensor(cfg["text_cfg"]["vocab_size"])
    return state


def standin_inception_state_dict(seed: int = 0) -> dict[str, Any]:
    """pytorch-fid's FID InceptionV3 layout (torchvision Inception3, 1008 classes, FID blocks), random
    weights; batch-norm statistics set from one seeded batch so activations keep a sane scale."""
    import torch
    from pytorch_fid import inception as pf

    torch.manual_seed(seed)
    # The same construction as pytorch-fid's fid_inception_v3(), without its download.
    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch, that batch's statistics
    net.train()
    with torch.no_grad():  # calibrate on image-like input, scaled to [-1, 1] as the FID network does
        images = torch.from_numpy(synthetic_images(4, 299, seed + 1)).permute(0, 3, 1, 2).float()
        net(images / 127.5 - 1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    return net.eval().state_dict()


ALEXNET_STANDIN_FILENAME = "standin-alexnet-owt.pth"


def standin_alexnet_state_dict(seed: int = 0) -> dict[str, Any]:
    """torchvision's AlexNet with seeded random weights: the keys, shapes and dtypes of
    alexnet-owt-7be5be79.pth (the LPIPS trunk reads its `features.*` convolutions)."""
    import torch
    from torchvision.models import alexnet

    torch.manual_seed(seed)
    return alexnet(weights=None).state_dict()


def ensure_standin_alexnet(folder: Path, seed: int = 0) -> Path:
    """The stand-in LPIPS AlexNet file under `folder` (built on first use, about 230 MB like the real one)."""
    path = Path(folder) / f"v{RECIPE_VERSION}-seed{seed}" / ALEXNET_STANDIN_FILENAME
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        _save_atomic(standin_alexnet_state_dict(seed), path)
        log.info("stand-in LPIPS AlexNet (seeded random weights) ready: %s, %.1f s", path, time.perf_counter() - start)
    return path


def synthetic_images(count: int, size: int, seed: int) -> np.ndarray:
    """Seeded smooth colour fields (8 x 8 noise upsampled bicubic), uint8 N x size x size x 3."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(count, 8, 8, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.Resampling.BICUBIC)) for c in coarse])


def ensure_standin_files(folder: Path, seed: int = 0) -> StandinFiles:
    """Build the stand-in files under `folder` on first use; later calls reuse them."""
    folder = Path(folder) / f"v{RECIPE_VERSION}-seed{seed}"
    files = StandinFiles(
        clip_weights=folder / f"standin-{CLIP_FILENAME}",
        inception_weights=folder / "standin-pt_inception-fid.pth",
        fid_stats=folder / "standin-fid-stats.npz",
    )
    if all(p.is_file() for p in (files.clip_weights, files.inception_weights, files.fid_stats)):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log.info("building the stand-in scorer files (seeded random weights) in %s", folder)
    if not files.clip_weights.is_file():
        _save_atomic(standin_clip_state_dict(seed), files.clip_weights)
    if not files.inception_weights.is_file():
        _save_atomic(standin_inception_state_dict(seed), files.inception_weights)
    if not files.fid_stats.is_file():
        features = InceptionFeatures(load_fid_inception(files.inception_weights))
        stats = FeatureStats()
        images = synthetic_images(STATS_IMAGES, STATS_IMAGE_SIZE, seed)
        for i in range(0, len(images), 8):
            stats.update(features(images[i : i + 8]))
        save_stats(files.fid_stats, stats.mu, stats.sigma)
    (folder / "README.json").write_text(
        json.dumps({"note": STANDIN_NOTE, "seed": seed, "recipe_version": RECIPE_VERSION}, indent=2) + "\n"
    )
    log.info("stand-in scorer files ready: %.1f s", time.perf_counter() - start)
    return files
