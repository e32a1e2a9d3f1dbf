"""Prompts tokenized when the QSL loads them, encoded inside the timed call: the MLPerf SDXL input path.

The MLPerf SDXL reference (text_to_image/coco.py and backend_pytorch.py, mlcommons/inference)
tokenizes every caption with both CLIP tokenizers when the dataset loads (padding to
`model_max_length`, truncating), tokenizes the negative prompt once, and in the timed `predict` runs
the two text encoders on those ids (penultimate hidden states concatenated, the pooled projection
of the second encoder) and passes the embeddings to `StableDiffusionXLPipeline`. This module does the
same for any pipeline shaped like SDXL's: two CLIP tokenizers and text encoders, the second one with
a projection, and a `__call__` that takes pooled embeddings. The embeddings are bit-identical to what
the pipeline's own `encode_prompt` makes from the same text (tests check it), so tokenizing early
changes where the time goes, not the images.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

REQUIRED_COMPONENTS = ("tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2")
REQUIRED_CALL_ARGS = (
    "prompt_embeds",
    "pooled_prompt_embeds",
    "negative_prompt_embeds",
    "negative_pooled_prompt_embeds",
)


def unsupported_reason(pipe: Any) -> str:
    """Why `pipe` cannot take pre-tokenized prompts ("" if it can)."""
    missing = [name for name in REQUIRED_COMPONENTS if getattr(pipe, name, None) is None]
    if missing:
        return f"it has no {', '.join(missing)}"
    if getattr(pipe, "tokenizer_3", None) is not None:
        return "it has a third (T5) tokenizer"
    params = inspect.signature(pipe.__call__).parameters
    lacking = [name for name in REQUIRED_CALL_ARGS if name not in params]
    if lacking:
        return f"its __call__ takes no {', '.join(lacking)}"
    return ""


def tokenize(pipe: Any, prompts: Sequence[str], negative_prompts: Sequence[str]) -> list[dict[str, Any]]:
    """Per prompt: the ids of the prompt and of its negative prompt for each of the two tokenizers,
    as the pipeline's `encode_prompt` makes them (int64 NumPy arrays)."""
    tokenizers = (pipe.tokenizer, pipe.tokenizer_2)
    ids = [_ids(tok, list(prompts), tok.model_max_length) for tok in tokenizers]
    # The pipeline pads negative prompts to the prompts' length; each distinct one is tokenized once.
    unique = sorted(set(negative_prompts))
    negative = {text: [_ids(tok, [text], ids[k].shape[1])[0] for k, tok in enumerate(tokenizers)] for text in unique}
    return [
        {"ids": (ids[0][i], ids[1][i]), "negative_ids": tuple(negative[negative_prompts[i]])}
        for i in range(len(prompts))
    ]


def _ids(tokenizer: Any, texts: list[str], max_length: int) -> np.ndarray:
    out = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="np")
    return np.asarray(out["input_ids"], dtype=np.int64)


def encode(pipe: Any, encoded: Sequence[dict[str, Any]], device: Any, guidance: bool) -> dict[str, Any]:
    """The pipeline's embedding arguments from pre-tokenized prompts: `prompt_embeds`,
    `pooled_prompt_embeds` and, with classifier-free guidance, the negative ones."""
    import torch

    def run(key: str) -> tuple[Any, Any]:
        embeds, pooled = [], None
        for k, encoder in enumerate((pipe.text_encoder, pipe.text_encoder_2)):
            ids = torch.from_numpy(np.stack([e[key][k] for e in encoded])).to(encoder.device)
            out = encoder(ids, output_hidden_states=True)
            # The first 2-D output is the projected pooled embedding (CLIPTextModelWithProjection's).
            if pooled is None and out[0].ndim == 2:
                pooled = out[0]
            embeds.append(out.hidden_states[-2])
        return torch.concat(embeds, dim=-1).to(dtype=pipe.text_encoder_2.dtype, device=device), pooled

    kwargs: dict[str, Any] = {}
    kwargs["prompt_embeds"], kwargs["pooled_prompt_embeds"] = run("ids")
    if guidance:
        kwargs["negative_prompt_embeds"], kwargs["negative_pooled_prompt_embeds"] = run("negative_ids")
    return kwargs
