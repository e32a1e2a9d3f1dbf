"""Tiny pipelines of every model family the harness supports, built in code for tests and demos.

Each family is its real diffusers pipeline class with the published `model_index.json` and scheduler
config of a real model (from `configs/components/<model>/`), and components shrunk to a few thousand
parameters, the way diffusers' own pipeline tests build theirs:

| builder      | pipeline                  | denoiser                                  | text encoders       |
|--------------|---------------------------|-------------------------------------------|---------------------|
| `tiny`       | StableDiffusionXLPipeline | UNet, text_time conditioning              | 2 x CLIP            |
| `tiny-sd15`  | StableDiffusionPipeline   | UNet (the SD 1.x / 2.x family)            | CLIP                |
| `tiny-sd3`   | StableDiffusion3Pipeline  | MMDiT transformer, flow matching (SD 3.5) | 2 x CLIP + T5       |
| `tiny-flux1` | FluxPipeline              | FLUX.1 transformer, packed latents        | CLIP + T5           |
| `tiny-flux2` | Flux2KleinPipeline        | FLUX.2 transformer, patchified latents    | Qwen3               |

They are built by the same code that builds full-size random-weight pipelines
(`backends.models.random_weights.build_pipeline`), saved once into the harness cache, and from then on
loaded through `from_pretrained` like real weights. A model config selects one with
`model.builder = "<name>"`.

    from backends.models.tiny_families import ensure_built_model
    path = ensure_built_model("tiny-flux2")
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import BackendError

logger = logging.getLogger(__name__)

COMPONENTS_DIR = Path(__file__).resolve().parents[2] / "configs" / "components"

# Bump when the builder changes in a way the configs do not show.
_BUILDER_VERSION = 1

# Small enough for tests to run every scenario in seconds; wide enough that GroupNorm (32 groups)
# and multi-head attention have something to split.
_CLIP = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-05,
}
_T5 = {
    "d_model": 32,
    "d_ff": 37,
    "d_kv": 8,
    "num_heads": 4,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "feed_forward_proj": "gated-gelu",
    "is_encoder_decoder": True,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
    "relative_attention_num_buckets": 8,
}
_VAE_2_LEVELS = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [32, 64],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 32,
}


@dataclass(frozen=True)
class TinyFamily:
    """A tiny pipeline: the published model index and scheduler of `published`, tiny components."""

    pipeline: str
    published: str  # folder under configs/components/ whose model_index.json and scheduler.json are used
    components: Callable[[], dict[str, dict[str, Any]]]  # component name -> tiny config
    tokenizer_max_length: dict[str, int]


def _clip_ids() -> dict[str, int]:
    from backends.models.tiny_model import BOS_TOKEN, EOS_TOKEN, tiny_vocab_and_merges

    vocab, _ = tiny_vocab_and_merges()
    return {
        "vocab_size": len(vocab),
        "bos_token_id": vocab[BOS_TOKEN],
        "eos_token_id": vocab[EOS_TOKEN],
        "pad_token_id": vocab[EOS_TOKEN],
    }


def _t5_vocab_size() -> int:
    from backends.models.random_weights import offline_t5_tokenizer

    return len(offline_t5_tokenizer())


def _qwen_vocab_size() -> int:
    from backends.models.random_weights import offline_qwen2_tokenizer

    return len(offline_qwen2_tokenizer())


def _sd15() -> dict[str, dict[str, Any]]:
    return {
        "unet": {
            "sample_size": 16,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": [32, 64],
            "layers_per_block": 1,
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
        },
        "vae": {**_VAE_2_LEVELS, "scaling_factor": 0.18215},
        "text_encoder": {**_CLIP, **_clip_ids(), "projection_dim": 32},
    }


def _sd3() -> dict[str, dict[str, Any]]:
    clip = {**_CLIP, **_clip_ids(), "hidden_size": 16, "intermediate_size": 37, "num_attention_heads": 2}
    return {
        # Joint attention over T5's width (32); the two CLIP hidden states (16 + 16) are padded to
        # it, and their pooled projections (16 + 16) make the pooled projection (32).
        "transformer": {
            "sample_size": 16,
            "patch_size": 2,
            "in_channels": 4,
            "out_channels": 4,
            "num_layers": 2,
            "attention_head_dim": 8,
            "num_attention_heads": 4,
            "joint_attention_dim": 32,
            "caption_projection_dim": 32,
            "pooled_projection_dim": 32,
            "pos_embed_max_size": 16,
            "dual_attention_layers": [0],
            "qk_norm": "rms_norm",
        },
        "vae": {
            **_VAE_2_LEVELS,
            "scaling_factor": 1.5305,
            "shift_factor": 0.0609,
            "use_quant_conv": False,
            "use_post_quant_conv": False,
        },
        "text_encoder": {**clip, "projection_dim": 16},
        "text_encoder_2": {**clip, "projection_dim": 16},
        "text_encoder_3": {**_T5, "vocab_size": _t5_vocab_size()},
    }


def _flux1() -> dict[str, dict[str, Any]]:
    return {
        # Packed latents: 2 x 2 patches of the VAE's 4 channels are the transformer's 16 inputs.
        "transformer": {
            "patch_size": 1,
            "in_channels": 16,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 32,  # T5's width
            "pooled_projection_dim": 32,  # CLIP's pooled output (its hidden size)
            "guidance_embeds": False,
            "axes_dims_rope": [4, 6, 6],  # sums to attention_head_dim
        },
        "vae": {
            **_VAE_2_LEVELS,
            "scaling_factor": 0.3611,
            "shift_factor": 0.1159,
            "use_quant_conv": False,
            "use_post_quant_conv": False,
        },
        "text_encoder": {**_CLIP, **_clip_ids(), "projection_dim": 32},
        "text_encoder_2": {**_T5, "vocab_size": _t5_vocab_size()},
    }


def _flux2() -> dict[str, dict[str, Any]]:
    hidden = 16
    return {
        # Patchified latents: 2 x 2 patches of the VAE's 4 channels are the transformer's 16 inputs;
        # the text conditioning stacks three Qwen3 hidden states (layers 9, 18, 27, as the pipeline
        # takes them), so the tiny Qwen3 keeps 28 narrow layers.
        "transformer": {
            "patch_size": 1,
            "in_channels": 16,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 3 * hidden,
            "timestep_guidance_channels": 32,
            "mlp_ratio": 3.0,
            "axes_dims_rope": [4, 4, 4, 4],
            "guidance_embeds": False,
        },
        "vae": {
            **_VAE_2_LEVELS,
            "use_quant_conv": True,
            "use_post_quant_conv": True,
            "patch_size": [2, 2],
        },
        "text_encoder": {
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "vocab_size": _qwen_vocab_size(),
            "hidden_size": hidden,
            "intermediate_size": 32,
            "num_hidden_layers": 28,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-06,
            "rope_theta": 1000000,
            "tie_word_embeddings": True,
        },
    }


FAMILIES: dict[str, TinyFamily] = {
    "tiny-sd15": TinyFamily("StableDiffusionPipeline", "sd15", _sd15, {"tokenizer": 77}),
    "tiny-sd3": TinyFamily(
        "StableDiffusion3Pipeline", "sd35-medium", _sd3, {"tokenizer": 77, "tokenizer_2": 77, "tokenizer_3": 256}
    ),
    "tiny-flux1": TinyFamily("FluxPipeline", "flux1-schnell", _flux1, {"tokenizer": 77, "tokenizer_2": 512}),
    "tiny-flux2": TinyFamily("Flux2KleinPipeline", "flux2-klein-4b", _flux2, {"tokenizer": 512}),
}
# `tiny`, the SDXL-shaped default model, predates the families and keeps its own builder.
TINY_SDXL = "tiny"
BUILDERS = (TINY_SDXL, *FAMILIES)


def family_configs(name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(model_index, component configs) of a tiny family: published index and scheduler, tiny models."""
    from backends.models.random_weights import read_component_configs

    family = _family(name)
    model_index, published = read_component_configs(COMPONENTS_DIR / family.published)
    configs = family.components()
    configs["scheduler"] = published["scheduler"]
    return model_index, configs


def build_family_pipeline(name: str, seed: int = 0) -> Any:
    """Build the tiny pipeline `name` in memory (CPU, float32) with weights drawn from `seed`."""
    from backends.models.random_weights import build_pipeline

    family = _family(name)
    model_index, configs = family_configs(name)
    return build_pipeline(
        family.pipeline, model_index, configs, seed=seed, tokenizer_max_length=family.tokenizer_max_length
    )


def family_model_id(name: str) -> str:
    """Cache folder name: changes whenever what the folder would contain changes."""
    import diffusers
    import transformers

    family = _family(name)
    model_index, configs = family_configs(name)
    key = json.dumps(
        {
            "name": name,
            "pipeline": family.pipeline,
            "model_index": model_index,
            "configs": configs,
            "tokenizer_max_length": family.tokenizer_max_length,
            "builder": _BUILDER_VERSION,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
        },
        sort_keys=True,
    )
    return f"{name}-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def ensure_built_model(name: str, cache_dir: str | Path | None = None) -> Path:
    """The saved folder of builder `name` (one of `BUILDERS`), built and saved first if needed."""
    from backends.models.tiny_model import ensure_saved_model, ensure_tiny_model

    if name == TINY_SDXL:
        return ensure_tiny_model(cache_dir)
    _family(name)

    def save(folder: Path) -> None:
        build_family_pipeline(name, seed=0).save_pretrained(folder, safe_serialization=True)

    return ensure_saved_model(family_model_id(name), save, cache_dir)


def _family(name: str) -> TinyFamily:
    family = FAMILIES.get(name)
    if family is None:
        raise BackendError(f"unknown model builder {name!r}; choose one of: {', '.join(BUILDERS)}")
    return family
