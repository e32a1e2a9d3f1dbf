"""CLIP score as the MLPerf SDXL scorer computes it (text_to_image/tools/clip/clip_encoder.py in
mlcommons/inference): open_clip `ViT-B-32` with the `openai` weights, open_clip's own preprocessing
(resize the shorter side to 224 bicubic, centre crop, normalise with the OpenAI mean and std) on the
PIL image and its tokenizer, and per image `100 * cosine(image features, caption features)`, not
clamped; the score of a set is the mean over its images.

The MLPerf scorer pins open-clip-torch 2.7.0, where `pretrained="openai"` loads OpenAI's checkpoint
with `load_openai_model`: the model rebuilt from the checkpoint's state dict with QuickGELU (what the
OpenAI weights were trained with), cast to float32 on the CPU. open_clip 3.x builds plain `ViT-B-32`
with GELU for that tag (and only warns), which changes the score; so this module calls
`open_clip.load_openai_model` on the local file directly, the 2.7.0 path. Nothing downloads.

Batched: N images and their N captions go through the towers together; each image is still
preprocessed on its own as a PIL image, as the reference does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from accuracy.errors import AccuracyError

log = logging.getLogger(__name__)

CLIP_MODEL = "ViT-B-32"
CLIP_PRETRAINED = "openai"
CLIP_FILENAME = "ViT-B-32.pt"


def clip_preprocess(image_size: int) -> Any:
    """open_clip's evaluation transform for the OpenAI weights."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    return open_clip.image_transform(image_size, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)


_LOADED: dict[tuple[str, int, int, str], Any] = {}  # one model in memory per process, reused


def load_clip_model(path: str | Path, device: str = "cpu") -> Any:
    """The CLIP model from an OpenAI-format checkpoint (the JIT archive ViT-B-32.pt, or its state dict).

    Loaded once per (file, device) in a process: rescoring in a loop, or a test session, reuses it.
    """
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, device)
    if key not in _LOADED:
        model = _load_clip_model(path, device)
        _LOADED.clear()
        _LOADED[key] = model
    return _LOADED[key]


def _load_clip_model(path: str | Path, device: str) -> Any:
    import warnings

    import open_clip

    try:
        with warnings.catch_warnings():
            # open_clip tries torch.jit.load first (OpenAI's file is a TorchScript archive); torch >= 2.10 warns.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*is deprecated.*", category=FutureWarning)
            model = open_clip.load_openai_model(str(path), precision="fp32", device=device)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise AccuracyError(
            f"CLIP weights {str(path)!r} are not an OpenAI-format {CLIP_MODEL} checkpoint: {str(exc)[:300]}"
        ) from exc
    return model.eval()


class ClipScorer:
    """`scores(images, captions)` -> 100 * cosine similarity per (image, caption) pair, float64."""

    def __init__(self, model: Any, device: str = "cpu") -> None:
        import open_clip

        self.model, self.device = model, device
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.preprocess = clip_preprocess(self.image_size)
        self.tokenize = open_clip.tokenize

    @classmethod
    def from_file(cls, path: str | Path, device: str = "cpu") -> ClipScorer:
        return cls(load_clip_model(path, device), device)

    def scores(self, images: np.ndarray, captions: Sequence[str]) -> np.ndarray:
        import torch
        from PIL import Image

        if len(images) != len(captions):
            raise AccuracyError(f"{len(images)} images but {len(captions)} captions")
        with torch.no_grad():
            # 1. Images: open_clip's transform on each PIL image, then one batch through the tower.
            pixels = torch.stack([self.preprocess(Image.fromarray(img)) for img in images]).to(self.device)
            image_features = self.model.encode_image(pixels).float()
            image_features /= image_features.norm(dim=-1, keepdim=True)
            # 2. Captions: open_clip's tokenizer (77 tokens, truncated), one batch.
            tokens = self.tokenize(list(captions)).to(self.device)
            text_features = self.model.encode_text(tokens).float()
            text_features /= text_features.norm(dim=-1, keepdim=True)
            # 3. Cosine per pair; the reference takes `.item()` of the float32 similarity, then x 100.
            similarity = (image_features * text_features).sum(dim=-1)
        return similarity.cpu().numpy().astype(np.float64) * 100
