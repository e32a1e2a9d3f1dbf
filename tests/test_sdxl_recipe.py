"""The MLPerf SDXL recipe and input path: the config, the real captions and latent in the QSL, the
latent passed unscaled (the pipeline scales it), and prompts tokenized at QSL load."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from backends.base import PromptBatch, PromptPreprocessor
from backends.diffusers_eager import DiffusersEagerBackend, DiffusersEagerOptions
from backends.models.tiny_families import ensure_built_model
from harness.config import resolve_config
from harness.data.latents import LatentSource
from harness.data.prompts import load_prompts
from harness.data.qsl import QuerySampleLibrary
from harness.run.model import latent_shape, model_spec
from tests.conftest import SHARED

MLPERF = SHARED / "data" / "mlperf-sdxl"
CAPTIONS = MLPERF / "captions_source.tsv"
LATENTS = MLPERF / "latents.npy"
needs_mlperf_data = pytest.mark.skipif(
    not (CAPTIONS.is_file() and LATENTS.is_file()),
    reason=f"needs the shared MLPerf SDXL captions and latents in {MLPERF}",
)
NEGATIVE = "normal quality, low quality, worst quality, low res, blurry, nsfw, nude"
PROMPTS = ("a red bicycle leaning against a brick wall", "two dogs playing in the snow", "a bowl of soup")


def test_the_sdxl_config_is_the_mlperf_recipe() -> None:
    """DESIGN.md's MLPerf SDXL facts (closed division), as the model config states them."""
    m = resolve_config("sdxl").model
    assert (m.pipeline, m.scheduler, m.steps, m.guidance_scale) == (
        "StableDiffusionXLPipeline",
        "EulerDiscreteScheduler",
        20,
        8.0,
    )
    assert (m.height, m.width, m.negative_prompt, m.mlperf_name) == (1024, 1024, NEGATIVE, "stable-diffusion-xl")
    assert latent_shape(resolve_config("sdxl")) == (4, 128, 128)
    assert resolve_config("sdxl").latents.mode == "shared" and resolve_config("sdxl").latents.seed == 0
    assert (m.clip_score_min, m.clip_score_max) == (31.68631873, 31.81331801)
    assert (m.fid_min, m.fid_max) == (23.01085758, 23.95007626)
    assert m.pretokenize and m.hub_id == "stabilityai/stable-diffusion-xl-base-1.0"


@needs_mlperf_data
def test_the_shared_latent_file_has_the_shape_the_config_makes() -> None:
    assert np.load(LATENTS).shape == (1, *latent_shape(resolve_config("sdxl")))


def _caption_row(index: int) -> list[str]:
    """Row `index` of the TSV (header excluded), split by hand: only for rows without quotes."""
    line = CAPTIONS.read_text(encoding="utf-8").splitlines()[index + 1]
    assert '"' not in line, "pick a row without quoting"
    return line.split("\t")


@needs_mlperf_data
@pytest.mark.parametrize("index", [0, 1, 2718, 4999])
def test_the_qsl_gives_the_caption_of_a_sample_index_and_the_file_latent(index: int) -> None:
    cfg = resolve_config("sdxl")
    prompts = load_prompts(str(CAPTIONS), cfg.model.negative_prompt)
    latents = LatentSource(latent_shape(cfg), "shared", file=str(LATENTS))
    qsl = QuerySampleLibrary(prompts, latents)
    assert qsl.total_count == 5000
    qsl.load_samples([index, 7])
    batch = qsl.batch([index, 7])
    assert batch.prompts[0] == _caption_row(index)[2]
    assert batch.negative_prompts == (NEGATIVE, NEGATIVE)
    expected = np.load(LATENTS)[0]
    for row in batch.latents:  # every sample gets the one latent, bit for bit
        assert row.dtype == np.float32 and row.tobytes() == expected.tobytes()


# -- the backend side, on the tiny SDXL-shaped model --------------------------------------------------


@pytest.fixture(scope="module")
def tiny_spec(harness_cache: Path):
    cfg = resolve_config("tiny")
    return model_spec(cfg, str(ensure_built_model("tiny", harness_cache)))


@pytest.fixture(scope="module")
def backends(tiny_spec) -> Iterator[dict[str, DiffusersEagerBackend]]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    made = {}
    for name, pretokenize in (("tokens", True), ("text", False)):
        made[name] = DiffusersEagerBackend(replace(tiny_spec, pretokenize=pretokenize), DiffusersEagerOptions())
        made[name].load()
    yield made
    for backend in made.values():
        backend.close()
    torch.set_num_threads(before)


def _latents(n: int) -> np.ndarray:
    shape = (n, *latent_shape(resolve_config("tiny")))
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def test_the_latent_reaches_the_pipeline_unscaled_and_the_pipeline_scales_it(
    backends: dict[str, DiffusersEagerBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the reference passes latents= (coco.py: the file's tensor in the model dtype): the
    backend hands over the file's values as they are; the pipeline multiplies by init_noise_sigma."""
    if LATENTS.is_file():
        latent = np.load(LATENTS)  # (1, 4, 128, 128): the tiny model takes it at 512 x 512
        backend = DiffusersEagerBackend(replace(backends["text"].model, height=512, width=512), DiffusersEagerOptions())
        backend.load()
    else:
        latent, backend = _latents(1), backends["text"]
    pipe, _ = backend._loaded()
    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    original = pipe.prepare_latents

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen["given"] = kwargs["latents"] if "latents" in kwargs else args[-1]
        seen["made"] = original(*args, **kwargs)
        raise Stop  # nothing after this step is under test

    monkeypatch.setattr(pipe, "prepare_latents", spy)
    with pytest.raises(Stop):
        backend.generate(PromptBatch((0,), PROMPTS[:1], (NEGATIVE,), latent))
    given = seen["given"]
    assert given.dtype == torch.float32 and torch.equal(given.cpu(), torch.from_numpy(latent))
    sigma = pipe.scheduler.init_noise_sigma
    assert sigma > 1  # Euler's: the scaling is not a no-op
    assert torch.equal(seen["made"], given * sigma)


def test_prompts_are_tokenized_at_qsl_load_and_give_the_same_images(
    backends: dict[str, DiffusersEagerBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens, text = backends["tokens"], backends["text"]
    assert isinstance(tokens, PromptPreprocessor)
    assert text.preprocess_prompts(PROMPTS, (NEGATIVE,) * 3) is None  # the model does not ask for it

    prompts = load_prompts("", NEGATIVE)
    qsl = QuerySampleLibrary(prompts, LatentSource(latent_shape(resolve_config("tiny")), "shared", seed=0))
    qsl.set_preprocessor(tokens.preprocess_prompts)
    qsl.load_samples([3, 4, 5])
    batch = qsl.batch([3, 4, 5])
    pipe, _ = tokens._loaded()
    for i, encoded in zip((3, 4, 5), batch.encoded, strict=True):
        expected = pipe.tokenizer(prompts.texts[i], padding="max_length", max_length=77, truncation=True).input_ids
        assert encoded["ids"][0].tolist() == expected and len(encoded["negative_ids"][1]) == 77

    # No tokenizer runs inside the timed call once the ids are there.
    calls = []
    tokenizer_cls = type(pipe.tokenizer)
    original = tokenizer_cls.__call__
    monkeypatch.setattr(tokenizer_cls, "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    from_tokens = tokens.generate(batch).images
    assert calls == []
    from_text = text.generate(replace(batch, encoded=())).images
    assert calls, "the text path tokenizes inside generate"
    # Same ids, same encoders: bit-identical uint8 HWC images.
    assert from_tokens.dtype == np.uint8 and from_tokens.shape == (3, 64, 64, 3)
    np.testing.assert_array_equal(from_tokens, from_text)
    qsl.unload_samples([3, 4, 5])
    qsl.load_samples([3])
    assert len(qsl.batch([3]).encoded) == 1


def test_pretokenize_is_refused_for_a_pipeline_that_cannot_take_it(harness_cache: Path) -> None:
    from backends.base import BackendError

    cfg = resolve_config("tiny-sd15")
    spec = replace(model_spec(cfg, str(ensure_built_model("tiny-sd15", harness_cache))), pretokenize=True)
    backend = DiffusersEagerBackend(spec, DiffusersEagerOptions(num_threads=0))
    with pytest.raises(BackendError, match="StableDiffusionPipeline cannot take them: it has no tokenizer_2"):
        backend.load()
