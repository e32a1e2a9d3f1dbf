"""The embedded tiny model: an SDXL-shaped diffusers pipeline with seeded random weights.

It has every part the real StableDiffusionXLPipeline has (two CLIP text encoders, a UNet with
SDXL's "text_time" added conditioning, a KL VAE, SDXL's Euler scheduler) at a size that makes a
64 x 64 image in about a tenth of a second (8 steps, guidance 8) on one CPU thread. It is built
in code from `TINY_CONFIG`, the way diffusers' own pipeline tests build their dummy components,
and saved as an ordinary diffusers folder so that it loads through `from_pretrained`, the same
path real weights take.
Its images are noise-like: it exists to exercise the harness, not to draw.

    from backends.models.tiny_model import ensure_tiny_model
    path = ensure_tiny_model()   # builds once into the cache, then returns the cached folder
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from backends.base import BackendError

logger = logging.getLogger(__name__)

# Bump when the builder changes in a way the config does not show (tokenizer, seeding order).
_BUILDER_VERSION = 2

# Every knob of the architecture. Nested dicts are passed as keyword arguments to the
# constructors, so what is written here is exactly what gets built.
TINY_CONFIG: dict[str, Any] = {
    "image_size": 64,
    "tokenizer": {"model_max_length": 77},
    # CLIP ViT-L-like first encoder; SDXL uses its penultimate hidden state.
    "text_encoder": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "projection_dim": 32,
        "hidden_act": "quick_gelu",
    },
    # OpenCLIP bigG-like second encoder; its projected pooled output feeds the UNet's add_embedding.
    "text_encoder_2": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "projection_dim": 32,
        "hidden_act": "gelu",
    },
    # SDXL's UNet layout (a plain first level, cross-attention below, "text_time" added
    # conditioning), two levels deep instead of three.
    "unet": {
        "sample_size": 16,  # image_size // vae scale factor, 2 ** (len(vae block_out_channels) - 1)
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "attention_head_dim": (2, 4),  # diffusers' name for the number of heads: 16 channels each
        "transformer_layers_per_block": (1, 1),
        "use_linear_projection": True,
        "cross_attention_dim": 64,  # text_encoder hidden_size + text_encoder_2 hidden_size
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        # 6 time ids x addition_time_embed_dim + text_encoder_2 projection_dim
        "projection_class_embeddings_input_dim": 80,
        "norm_num_groups": 32,
    },
    # Three levels: a scale factor of 4 (SDXL's is 8), so 64 x 64 images come from (4, 16, 16)
    # latents. configs/models/tiny.toml says the same with vae_scale_factor = 4.
    "vae": {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": (32, 32, 64),
        "layers_per_block": 1,
        "down_block_types": ("DownEncoderBlock2D",) * 3,
        "up_block_types": ("UpDecoderBlock2D",) * 3,
        "norm_num_groups": 32,
        "sample_size": 64,
        "scaling_factor": 0.13025,  # SDXL's
    },
    # SDXL base 1.0's scheduler config.
    "scheduler": {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "timestep_spacing": "leading",
        "steps_offset": 1,
        "prediction_type": "epsilon",
        "interpolation_type": "linear",
        "use_karras_sigmas": False,
    },
}

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"


def tiny_latent_shape() -> tuple[int, int, int]:
    """(C, h, w) of one initial latent for the tiny model at its native image size."""
    vae = TINY_CONFIG["vae"]
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    side = TINY_CONFIG["image_size"] // factor
    return (vae["latent_channels"], side, side)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    chars = list(printable)
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


# Words the tiny tokenizer keeps whole, most important first: BPE applies the lowest-ranked merge
# first, so an early word's merges always complete, while a later word may stay in pieces. Without
# merges a byte-level tokenizer spends a token per character and truncates most prompts at 77
# tokens (with a warning per batch); with these, MLPerf's COCO captions average 27 tokens and
# 1 in 5000 is truncated. The list: MLPerf's negative prompt, common prompt-style words, and the
# 100 commonest words of the MLPerf COCO captions.
_WHOLE_WORDS = """
normal quality low worst res blurry nsfw nude photo photograph portrait light lighting soft
shallow depth field lens golden hour studio background close up detailed detail painting
style cinematic dramatic warm cold morning evening sunset sunlight shadow shadows bright
dark color colorful wide angle view scene highly realistic illustration watercolor oil of on
in the with and is to man sitting next standing two an people white top at are woman that
holding street it table large riding group down person some front tennis dog near young
plate red train small water room black cat walking playing while green his sign baseball
grass side bathroom by toilet building parked other food bed has pizza flying kitchen blue
clock couple boy skateboard laying ball filled over bus through beach bench yellow brown
game computer wearing snow horse covered road men each there wooden giraffe looking area
city fire out
""".split()


def tiny_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary layout at a small size: the 256 byte characters, their end-of-word
    forms, the tokens the merges make, then the two special tokens. Any text can be tokenized
    with it; the words in `_WHOLE_WORDS` become one token each (or a few, for later ones)."""
    chars = list(_bytes_to_unicode().values())
    vocab = {token: i for i, token in enumerate(chars + [c + "</w>" for c in chars])}
    merges: list[tuple[str, str]] = []
    for word in _WHOLE_WORDS:
        # Left to right: ("q", "u") -> "qu", ("qu", "a") -> "qua", ..., ("qualit", "y</w>").
        pieces = [*word[:-1], word[-1] + "</w>"]
        prefix = pieces[0]
        for piece in pieces[1:]:
            token = prefix + piece
            if token not in vocab:
                vocab[token] = len(vocab)
                merges.append((prefix, piece))
            prefix = token
    for special in (BOS_TOKEN, EOS_TOKEN):
        vocab[special] = len(vocab)
    return vocab, merges


def write_tokenizer_files(folder: str | Path) -> None:
    """Write CLIP's two tokenizer source files, vocab.json and merges.txt, into `folder`."""
    vocab, merges = tiny_vocab_and_merges()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _build_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="tiny-tokenizer-") as tmp:
        write_tokenizer_files(tmp)
        return CLIPTokenizer.from_pretrained(
            tmp,
            model_max_length=TINY_CONFIG["tokenizer"]["model_max_length"],
            bos_token=BOS_TOKEN,
            eos_token=EOS_TOKEN,
            unk_token=EOS_TOKEN,
            pad_token=EOS_TOKEN,
        )


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Silence diffusers' and transformers' tqdm bars for the duration, then restore them."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    restore = [
        lib.enable_progress_bar for lib in (diffusers_logging, transformers_logging) if lib.is_progress_bar_enabled()
    ]
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for enable in restore:
            enable()


def build_tiny_pipeline(seed: int = 0) -> Any:
    """Build the tiny StableDiffusionXLPipeline in memory with weights drawn from `seed`.

    The same seed gives bit-identical weights. The caller's global torch RNG state is left as
    it was.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = copy.deepcopy(TINY_CONFIG)
    vocab, _ = tiny_vocab_and_merges()
    token_ids: dict[str, Any] = {
        "vocab_size": len(vocab),
        "bos_token_id": vocab[BOS_TOKEN],
        "eos_token_id": vocab[EOS_TOKEN],
        "pad_token_id": vocab[EOS_TOKEN],
    }

    with torch.random.fork_rng(devices=[]):
        # One seed per component, as diffusers' tests do, so that changing one part of the
        # config does not change the weights of the others.
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**cfg["unet"])
        torch.manual_seed(seed)
        vae = AutoencoderKL(**cfg["vae"])
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"], **token_ids))
        torch.manual_seed(seed)
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_encoder_2"], **token_ids))

    for module in (vae, text_encoder, text_encoder_2, unet):
        cast(torch.nn.Module, module).eval()  # diffusers' models are nn.Modules; its type hints do not say so
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=_build_tokenizer(),
        tokenizer_2=_build_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**cfg["scheduler"]),
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # DiffusionPipeline's, not in its hints
    return pipe


def tiny_model_id() -> str:
    """Folder name of the cached tiny model: changes whenever what it would contain changes."""
    import diffusers
    import transformers

    key = json.dumps(
        {
            "config": TINY_CONFIG,
            "builder": _BUILDER_VERSION,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
        },
        sort_keys=True,
    )
    return "tiny-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    """`$HARNESS_CACHE_DIR`, else `~/.cache/t2i-harness`."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "t2i-harness"


def ensure_tiny_model(cache_dir: str | Path | None = None) -> Path:
    """Return the folder of the saved tiny model, building and saving it first if needed."""

    def save(folder: Path) -> None:
        build_tiny_pipeline(seed=0).save_pretrained(folder, safe_serialization=True)
        # Real checkpoints ship the tokenizer's source files too; tokenizer.json alone would do.
        for name in ("tokenizer", "tokenizer_2"):
            write_tokenizer_files(folder / name)

    return ensure_saved_model(tiny_model_id(), save, cache_dir)


def ensure_saved_model(model_id: str, save: Callable[[Path], None], cache_dir: str | Path | None = None) -> Path:
    """Return `<cache>/<model_id>`, first calling `save(folder)` to write it there if it is missing.

    Safe against concurrent callers: each builds into its own temporary sibling folder and
    renames it into place; the loser of a race discards its copy and uses the winner's.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / model_id
    if target.exists():
        # Folders only appear by an atomic rename, so this one is complete, unless someone
        # else put it there.
        if (target / "model_index.json").is_file():
            return target
        raise BackendError(
            f"model folder {target} exists but has no model_index.json; delete it and run again to rebuild"
        )

    root.mkdir(parents=True, exist_ok=True)
    start_ns = time.perf_counter_ns()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
    try:
        with _quiet_progress_bars():
            save(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        try:
            os.rename(tmp, target)
        except OSError:
            # Renaming onto a non-empty folder fails: another process finished first.
            if not (target / "model_index.json").is_file():
                raise
            logger.info("%s: another process saved %s first; using it", model_id, target)
            return target
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    logger.info(
        "%s: built and saved to %s in %.1f s",
        model_id,
        target,
        (time.perf_counter_ns() - start_ns) / 1e9,
    )
    return target
