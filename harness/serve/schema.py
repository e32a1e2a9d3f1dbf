"""The request of POST /v1/images/generations, checked against the served model and its limits.

The body is parsed by pydantic (strict types, unknown fields refused), then checked against what the
server serves; either failure is an ApiError naming the field (docs/serve.md has the protocol).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from harness.data.latents import seeded_latents
from harness.serve.errors import ApiError
from harness.serve.service import ServedModel

RESPONSE_FORMATS = ("b64_json", "raw")
MAX_SEED = 2**63 - 1
RANDOM_SEEDS = 2**31  # a random seed is drawn below this, so that any client can send it back


class ImageRequest(BaseModel):
    """The JSON body: OpenAI Images API fields, then ours."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str
    n: int = 1
    size: str | None = None
    response_format: str = "b64_json"
    model: str | None = None
    user: str | None = None  # OpenAI's end-user id; accepted and ignored
    negative_prompt: str | None = None
    sample_index: int | None = None
    latents_sha256: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None


@dataclass(frozen=True)
class ImageItem:
    """One image's work: what goes into one row of a backend batch."""

    prompt: str
    negative_prompt: str
    latent: np.ndarray  # (1, C, h, w) float32
    label: int  # the batch's sample index: the request's sample_index, else the seed
    seed: int | None  # echoed in the response when the latent came from a seed


@dataclass(frozen=True)
class Generation:
    """A checked request: its images' work and how to answer."""

    items: tuple[ImageItem, ...]
    response_format: str


def parse_body(body: bytes) -> ImageRequest:
    """JSON -> ImageRequest; malformed JSON or a field of the wrong type is a 400 naming the field."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, got {type(data).__name__}")
    try:
        return ImageRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from exc


def validation_error(errors: Any) -> ApiError:
    """The first of pydantic's (or FastAPI's) errors as a 400 naming its field."""
    first = errors[0]
    loc = [part for part in first.get("loc", ()) if part != "body"]
    param = str(loc[0]) if loc else None
    if first.get("type") == "extra_forbidden":
        allowed = ", ".join(ImageRequest.model_fields)
        return ApiError(400, f"unknown field {param!r}; allowed: {allowed}", param)
    if first.get("type") == "missing":
        return ApiError(400, f"{param} is required", param)
    value = first.get("input")
    return ApiError(400, f"{param}: {first.get('msg', 'invalid')} (got {value!r})", param)


def check_request(req: ImageRequest, served: ServedModel) -> Generation:
    """The request against the served model: size, n, prompt length, format, fixed values, latents."""
    if len(req.prompt) > served.max_prompt_chars:
        raise ApiError(
            400, f"prompt has {len(req.prompt)} characters; allowed: at most {served.max_prompt_chars}", "prompt"
        )
    if req.negative_prompt is not None and len(req.negative_prompt) > served.max_prompt_chars:
        raise ApiError(
            400,
            f"negative_prompt has {len(req.negative_prompt)} characters; allowed: at most {served.max_prompt_chars}",
            "negative_prompt",
        )
    if not 1 <= req.n <= served.max_n:
        raise ApiError(400, f"n {req.n} is out of range; allowed: 1..{served.max_n}", "n")
    if req.size is not None and req.size != served.size:
        raise ApiError(400, f"size {req.size!r} is not served; allowed: {served.size!r}", "size")
    if req.response_format not in RESPONSE_FORMATS:
        allowed = ", ".join(RESPONSE_FORMATS)
        raise ApiError(
            400, f"response_format {req.response_format!r} is not supported; allowed: {allowed}", "response_format"
        )
    if req.model is not None and req.model != served.name:
        raise ApiError(400, f"model {req.model!r} is not served; this server serves {served.name!r}", "model")
    if req.steps is not None and req.steps != served.steps:
        raise ApiError(400, f"steps {req.steps} differs from the served model's; served: {served.steps}", "steps")
    if req.guidance_scale is not None and req.guidance_scale != served.guidance_scale:
        raise ApiError(
            400,
            f"guidance_scale {req.guidance_scale} differs from the served model's; served: {served.guidance_scale}",
            "guidance_scale",
        )
    negative = served.negative_prompt if req.negative_prompt is None else req.negative_prompt
    return Generation(_items(req, served, negative), req.response_format)


def _items(req: ImageRequest, served: ServedModel, negative: str) -> tuple[ImageItem, ...]:
    if req.sample_index is not None and req.seed is not None:
        raise ApiError(400, "sample_index and seed both given; allowed: one of them, or neither", "seed")
    if req.latents_sha256 is not None and req.sample_index is None:
        raise ApiError(400, "latents_sha256 needs sample_index (the sample whose latent it hashes)", "latents_sha256")
    if req.sample_index is not None:
        index = req.sample_index
        if not 0 <= index < served.sample_count:
            raise ApiError(
                400, f"sample_index {index} is out of range; allowed: 0..{served.sample_count - 1}", "sample_index"
            )
        latent = served.latent_of_sample(index)
        if req.latents_sha256 is not None:
            ours = hashlib.sha256(latent.tobytes()).hexdigest()
            if req.latents_sha256.lower() != ours:
                raise ApiError(
                    409,
                    f"latents_sha256 {req.latents_sha256!r} differs from this server's latent for sample {index} "
                    f"({ours}): the client's and the server's latent settings differ, so the images would too",
                    "latents_sha256",
                )
        return tuple(ImageItem(req.prompt, negative, latent, index, None) for _ in range(req.n))
    if req.seed is not None and not 0 <= req.seed <= MAX_SEED - (req.n - 1):
        raise ApiError(400, f"seed {req.seed} is out of range; allowed: 0..{MAX_SEED - (req.n - 1)}", "seed")
    # Image k of a request gets seed + k, as a run's per-sample latents get seed + sample index.
    first = secrets.randbelow(RANDOM_SEEDS) if req.seed is None else req.seed
    shape = (1, *served.latents.shape)
    return tuple(
        ImageItem(req.prompt, negative, seeded_latents(shape, first + k), first + k, first + k) for k in range(req.n)
    )
