"""CLIP score as the MLPerf SDXL scorer computes it (text_to_image/tools/clip/clip_encoder.py in
mlcommons/inference): open_clip `ViT-B-32` with the `openai` weights, open_clip's own preprocessing
(resize the shorter side to 224 bicubic, centre crop, normalise with the OpenAI mean and std) on the
PIL image and its tokenizer, and per image `100 * cosine(image features, caption features)`, not
clamped; the score of a set is the mean over its images.

The MLPerf scorer was written against open-clip-torch 2.7.0; mlcommons/inference's
text_to_image/requirements.txt pins 2.26.1 since 2024-11 (commit e398b90e). In both,
`pretrained="openai"` loads OpenAI's checkpoint with `load_openai_model`: the model rebuilt from the
checkpoint's state dict with QuickGELU (what the OpenAI weights were trained with), cast to float32 on
the CPU. open_clip 3.x builds plain `ViT-B-32` with GELU for that tag (and only warns), which changes
the score; so this module calls `open_clip.load_openai_model` on the local file directly, the 2.x path.
Nothing downloads.

That loader (2.x and 3.x alike) builds the model with its Linear, Conv, attention and projection
weights in float16, loads the state dict into them, then casts the model to float32: those weights
keep float16 precision, whatever the file holds. OpenAI's ViT-B-32.pt stores them in float16, so
nothing changes; a float32 state dict is rounded. `ClipScorer.precision` says what the file held and
how many of its values the loader rounded (logged as a warning when any), and accuracy.json reports it
under `scorer.clip_precision`.

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
# open-clip-torch in mlcommons/inference's text_to_image/requirements.txt (since commit e398b90e, 2024-11).
MLPERF_OPEN_CLIP_PIN = "2.26.1"


def clip_preprocess(image_size: int) -> Any:
    """open_clip's evaluation transform for the OpenAI weights."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    return open_clip.image_transform(image_size, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)


# one model in memory per process, reused, with what its loading did to the weights' precision
_LOADED: dict[tuple[str, int, int, str], tuple[Any, dict[str, Any]]] = {}
# What open_clip's OpenAI loader does to every checkpoint (see the module docstring).
LOADED_PRECISION = (
    "Linear, Conv, attention and projection weights at float16 precision, the rest and the arithmetic float32"
)


def load_clip_model(path: str | Path, device: str = "cpu") -> Any:
    """The CLIP model from an OpenAI-format checkpoint (the JIT archive ViT-B-32.pt, or its state dict).

    Loaded once per (file, device) in a process: rescoring in a loop, or a test session, reuses it.
    """
    return load_clip_model_and_precision(path, device)[0]


def load_clip_model_and_precision(path: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """The model and `clip_weight_precision` of the file it came from."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, device)
    if key not in _LOADED:
        model = _load_clip_model(path, device)
        precision = clip_weight_precision(path, model)
        if precision["rounded_to_float16"]:
            log.warning(
                "CLIP weights %s hold %d float32 values; open_clip's OpenAI loader (as MLPerf's scorer uses it) "
                "rounded %d of them to float16: the scores are those of the rounded weights",
                path,
                precision["file_dtypes"].get("float32", 0),
                precision["rounded_to_float16"],
            )
        _LOADED.clear()
        _LOADED[key] = (model, precision)
    return _LOADED[key]


def _checkpoint_state_dict(path: str | Path) -> dict[str, Any]:
    """The file's tensors as the loader reads them: a TorchScript archive's state dict, else torch.load."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*is deprecated.*", category=FutureWarning)
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    except RuntimeError:
        state = torch.load(str(path), map_location="cpu")
        if "state_dict" in state and isinstance(state["state_dict"], dict):  # the loader's second layout
            return {k[7:]: v for k, v in state["state_dict"].items()}
        return dict(state)


def clip_weight_precision(path: str | Path, model: Any) -> dict[str, Any]:
    """What the file held (floating values per dtype), what the loaded model computes with, and how
    many of the file's values the loader changed by rounding them to float16."""
    import torch

    held: dict[str, int] = {}
    rounded = 0
    loaded = model.state_dict()
    for name, tensor in _checkpoint_state_dict(path).items():
        if not (isinstance(tensor, torch.Tensor) and tensor.is_floating_point()):
            continue
        dtype = str(tensor.dtype).replace("torch.", "")
        held[dtype] = held.get(dtype, 0) + tensor.numel()
        if tensor.dtype == torch.float32 and name in loaded:
            rounded += int((loaded[name].detach().cpu().float() != tensor).sum())
    return {
        "file_dtypes": dict(sorted(held.items())),
        "loaded": LOADED_PRECISION,
        "rounded_to_float16": rounded,
    }


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
        self.precision: dict[str, Any] = {}  # clip_weight_precision, when loaded from a file
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.preprocess = clip_preprocess(self.image_size)
        self.tokenize = open_clip.tokenize

    @classmethod
    def from_file(cls, path: str | Path, device: str = "cpu") -> ClipScorer:
        model, precision = load_clip_model_and_precision(path, device)
        scorer = cls(model, device)
        scorer.precision = precision
        return scorer

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
