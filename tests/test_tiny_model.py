"""The embedded tiny model: built in code, seeded, saved once, loaded like real weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from backends.base import BackendError
from backends.models import tiny_model
from backends.models.tiny_model import (
    TINY_CONFIG,
    build_tiny_pipeline,
    default_cache_dir,
    ensure_tiny_model,
    tiny_latent_shape,
    tiny_model_id,
    tiny_vocab_and_merges,
)

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture(scope="module")
def tiny_path(harness_cache: Path) -> Path:
    return ensure_tiny_model(harness_cache)


@pytest.fixture(scope="module")
def built() -> Any:
    return build_tiny_pipeline(seed=0)


def assert_same_weights(a: Any, b: Any) -> None:
    for name in COMPONENTS:
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys(), name
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}.{key} differs"


def test_saved_folder_loads_through_from_pretrained(tiny_path: Path, built: Any) -> None:
    assert (tiny_path / "model_index.json").is_file()
    assert list(tiny_path.rglob("*.safetensors")), "weights must be saved as safetensors"
    assert not list(tiny_path.rglob("*.bin"))

    pipe = DiffusionPipeline.from_pretrained(tiny_path, local_files_only=True)

    assert isinstance(pipe, StableDiffusionXLPipeline)
    assert isinstance(pipe.unet, UNet2DConditionModel)
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel)
    assert isinstance(pipe.text_encoder_2, CLIPTextModelWithProjection)
    assert isinstance(pipe.scheduler, EulerDiscreteScheduler)
    for key, value in TINY_CONFIG["scheduler"].items():
        assert pipe.scheduler.config[key] == value, key
    # The saved weights are exactly the ones the builder makes.
    assert_same_weights(pipe, built)


def test_saved_tokenizers_are_offline_clip_files(tiny_path: Path) -> None:
    vocab, merges = tiny_vocab_and_merges()
    for name in ("tokenizer", "tokenizer_2"):
        folder = tiny_path / name
        assert json.loads((folder / "vocab.json").read_text(encoding="utf-8")) == vocab
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        assert lines[0] == "#version: 0.2"
        assert [tuple(line.split(" ")) for line in lines[1:]] == merges
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_path, local_files_only=True)
    assert pipe.tokenizer.model_max_length == TINY_CONFIG["tokenizer"]["model_max_length"]
    assert len(pipe.tokenizer) == len(vocab)


def test_tokenizer_keeps_common_words_whole(built: Any) -> None:
    tokens = built.tokenizer.tokenize("Normal quality, low res, a man with a dog")
    assert tokens == [
        "normal</w>", "quality</w>", ",</w>", "low</w>", "res</w>", ",</w>",
        "a</w>", "man</w>", "with</w>", "a</w>", "dog</w>",
    ]  # fmt: skip


def test_tokenizer_covers_any_text_without_unknown_tokens(built: Any) -> None:
    tok = built.tokenizer
    vocab, _ = tiny_vocab_and_merges()
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    ids = tok("Café au lait ☕, 42 \u00d7 7 — naïve 日本").input_ids
    assert ids[0] == bos
    assert ids[-1] == eos
    assert eos not in ids[1:-1], "a character fell back to the unknown token"
    assert all(0 <= i < len(vocab) for i in ids)

    long = tok("a " * 200, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(long) == 77


def test_build_is_seeded_and_leaves_the_global_rng_alone(built: Any) -> None:
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    again = build_tiny_pipeline(seed=0)
    assert torch.equal(torch.rand(3), expected), "building must not consume the caller's RNG"

    assert_same_weights(again, built)
    other = build_tiny_pipeline(seed=1)
    assert not torch.equal(other.unet.conv_in.weight, built.unet.conv_in.weight)


def test_latent_shape_matches_the_architecture(built: Any) -> None:
    channels, h, w = tiny_latent_shape()
    assert channels == built.unet.config.in_channels == built.vae.config.latent_channels
    assert h == w == built.unet.config.sample_size
    assert h * built.vae_scale_factor == TINY_CONFIG["image_size"]


def test_folder_name_follows_config_and_versions(tiny_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tiny_path.name == tiny_model_id()
    assert tiny_path.name.startswith("tiny-")
    monkeypatch.setitem(TINY_CONFIG["unet"], "layers_per_block", 2)
    assert tiny_model_id() != tiny_path.name


def test_ensure_returns_the_cached_folder_without_rebuilding(tiny_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(seed: int = 0) -> Any:
        raise AssertionError("rebuilt a model that was already cached")

    monkeypatch.setattr(tiny_model, "build_tiny_pipeline", fail)
    assert ensure_tiny_model(tiny_path.parent) == tiny_path


def test_default_cache_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("HARNESS_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "t2i-harness"


def test_losing_a_build_race_keeps_the_winners_folder(
    tiny_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / tiny_model_id()

    class LoserPipeline:
        """Saves a marker, while 'another process' finishes the real folder first."""

        def save_pretrained(self, folder: Path, safe_serialization: bool) -> None:
            assert safe_serialization
            Path(folder, "model_index.json").write_text('{"loser": true}')
            shutil.copytree(tiny_path, target)

    monkeypatch.setattr(tiny_model, "build_tiny_pipeline", lambda seed=0: LoserPipeline())

    assert ensure_tiny_model(tmp_path) == target
    assert "loser" not in (target / "model_index.json").read_text()
    assert [p.name for p in tmp_path.iterdir()] == [target.name], "temporary folder left behind"


def test_folder_without_model_index_is_an_error(tmp_path: Path) -> None:
    broken = tmp_path / tiny_model_id()
    broken.mkdir()
    with pytest.raises(BackendError, match=str(broken)):
        ensure_tiny_model(tmp_path)


def test_default_cache_is_used_when_no_dir_is_given(tiny_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tiny_path.parent))
    assert ensure_tiny_model() == tiny_path
