"""Every model family through the same eager backend: UNet and transformer denoisers, CLIP, T5 and
Qwen3 text encoders, DDPM-style and flow-matching schedulers, packed and patchified latents.

The tiny families (backends/models/tiny_families.py) run through all three LoadGen scenarios via the CLI's
own entry point (`harness.cli.main`, in this process: a subprocess per run would pay the torch
import twelve times). One run goes through `python -m harness` in a subprocess as well.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from backends.base import BackendError, PromptBatch
from backends.diffusers_eager import DiffusersEagerBackend, DiffusersEagerOptions, pack_latents_2x2
from backends.models.tiny_families import BUILDERS, FAMILIES, ensure_built_model
from harness.config import resolve_config
from harness.data.latents import LatentSource
from harness.run.model import latent_shape, model_spec
from tests.conftest import run_main

SCENARIOS = ("SingleStream", "Offline", "Server")
# (family, the denoiser the pipeline has, the class of its text encoder)
FAMILY_PARTS = {
    "tiny-sd15": ("unet", "CLIPTextModel"),
    "tiny-sd3": ("transformer", "CLIPTextModelWithProjection"),
    "tiny-flux1": ("transformer", "CLIPTextModel"),
    "tiny-flux2": ("transformer", "Qwen3ForCausalLM"),
}
# Short development runs: about a second of LoadGen each.
QUICK = (
    "--set",
    "loadgen.min_duration_ms=300",
    "--set",
    "loadgen.min_query_count=6",
    "--set",
    "loadgen.offline_expected_qps=10",
    "--set",
    "loadgen.server_target_qps=20",
    "--set",
    "loadgen.single_stream_expected_latency_ns=20000000",
)


@pytest.fixture(scope="module")
def family_paths(harness_cache: Path) -> dict[str, Path]:
    return {name: ensure_built_model(name, harness_cache) for name in FAMILIES}


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_runs_every_scenario(
    family_paths: dict[str, Path], tmp_path: Path, family: str, scenario: str
) -> None:
    code, run_dir = run_main("--model", family, "--scenario", scenario, *QUICK, out=tmp_path / "runs")
    assert code == 0 and run_dir is not None
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok", summary["error"]
    assert (summary["model"], summary["scenario"], summary["backend"]) == (family, scenario, "diffusers-eager")
    assert summary["samples_completed"] >= 6
    assert summary["loadgen"]["errors"] == []
    sizes = {int(k): v for k, v in summary["batch_sizes"].items()}
    assert max(sizes) <= (1 if scenario == "SingleStream" else 4)
    assert summary["weights"] == "pretrained"
    backend = json.loads((run_dir / "manifest.json").read_text())["backend"]
    denoiser, encoder = FAMILY_PARTS[family]
    assert backend["denoiser"] == denoiser  # found by what the pipeline has
    assert backend["model_path"] == str(family_paths[family])
    assert encoder in _text_encoder_classes(family_paths[family])


def _text_encoder_classes(folder: Path) -> set[str]:
    index = json.loads((folder / "model_index.json").read_text())
    return {v[1] for k, v in index.items() if k.startswith("text_encoder") and isinstance(v, list)}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_accuracy_mode_logs_images_of_the_model_size(
    family_paths: dict[str, Path], tmp_path: Path, family: str
) -> None:
    args = ("--model", family, "--mode", "accuracy", "--set", "dataset.count=3", *QUICK)
    code, run_dir = run_main(*args, out=tmp_path / "runs")
    assert code == 0 and run_dir is not None
    log = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted({e["qsl_idx"] for e in log}) == [0, 1, 2]
    image = np.frombuffer(bytes.fromhex(log[0]["data"]), dtype=np.uint8).reshape(32, 32, 3)
    assert image.std() > 1, "a flat image: the pipeline produced nothing"


def test_the_module_entry_point_runs_a_transformer_family(run_cli, family_paths: dict[str, Path]) -> None:
    run = run_cli("--model", "tiny-flux2", "--scenario", "Offline", *QUICK)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    assert summary["status"] == "ok" and summary["samples_completed"] >= 6
    assert "samples/s" in run.stdout


# -- latents: what the QSL gives is what the pipeline would have drawn itself ---------------------------


def _backend(family: str, path: Path, **changes: Any) -> DiffusersEagerBackend:
    cfg = resolve_config(family)
    spec = model_spec(cfg, str(path))
    if changes:
        from dataclasses import replace

        spec = replace(spec, **changes)
    backend = DiffusersEagerBackend(spec, DiffusersEagerOptions(num_threads=0))
    backend.load()
    return backend


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_qsl_latent_is_the_one_the_pipeline_draws(family_paths: dict[str, Path], family: str, one_thread) -> None:
    """The harness's seeded latent for a sample, passed as latents=, gives the same image as the
    pipeline drawing its own latent from the same seed: shape, layout (FLUX.1 packing, FLUX.2
    patchifying) and scaling all agree with what `latents=` expects."""
    cfg = resolve_config(family)
    seed = 11
    source = LatentSource(latent_shape(cfg), "per-sample", seed=seed)
    backend = _backend(family, family_paths[family])
    prompt, negative = "a red bus on a street", cfg.model.negative_prompt
    ours = backend.generate(PromptBatch((0,), (prompt,), (negative,), source.for_samples([0]))).images

    pipe, _ = backend._loaded()
    kwargs: dict[str, Any] = {
        "prompt": [prompt],
        "num_inference_steps": cfg.model.steps,
        "guidance_scale": cfg.model.guidance_scale,
        "height": cfg.model.height,
        "width": cfg.model.width,
        "output_type": "pt",
        "generator": torch.Generator("cpu").manual_seed(seed),
    }
    if cfg.model.max_sequence_length:
        kwargs["max_sequence_length"] = cfg.model.max_sequence_length
    if negative:
        kwargs["negative_prompt"] = [negative]
    with torch.inference_mode():
        theirs = pipe(**kwargs).images
    expected = np.clip(np.round(theirs.permute(0, 2, 3, 1).float().numpy() * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(ours, expected)
    backend.close()


def test_packing_matches_the_flux_pipeline() -> None:
    from diffusers import FluxPipeline

    latents = torch.randn(2, 16, 8, 6, generator=torch.Generator().manual_seed(0))
    expected = FluxPipeline._pack_latents(latents, 2, 16, 8, 6)
    assert torch.equal(pack_latents_2x2(latents), expected)
    assert pack_latents_2x2(latents).shape == (2, 4 * 3, 64)


def test_latents_in_the_wrong_layout_are_refused(family_paths: dict[str, Path]) -> None:
    backend = _backend("tiny-flux1", family_paths["tiny-flux1"], latent_layout="nchw")
    latents = np.zeros((1, *latent_shape(resolve_config("tiny-flux1"))), dtype=np.float32)
    with pytest.raises(BackendError, match="takes 16 input channels.*latent_layout"):
        backend.generate(PromptBatch((0,), ("a cat",), ("",), latents))


def test_a_pipeline_without_negative_prompts_ignores_them_and_says_so(
    family_paths: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    backend = _backend("tiny-flux2", family_paths["tiny-flux2"])
    assert backend.describe()["takes_negative_prompt"] is False
    latents = np.zeros((1, *latent_shape(resolve_config("tiny-flux2"))), dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="backends.diffusers_eager"):
        plain = backend.generate(PromptBatch((0,), ("a cat",), ("",), latents)).images
        assert not caplog.records
        with_negative = backend.generate(PromptBatch((0,), ("a cat",), ("blurry",), latents)).images
    assert [r.getMessage() for r in caplog.records] == [
        "Flux2KleinPipeline takes no negative prompt: the negative prompts in this prompt set are ignored"
    ]
    np.testing.assert_array_equal(with_negative, plain)


def test_an_unknown_builder_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_main("--model", "tiny-sd15", "--set", "model.builder=tiny-sd9", out=tmp_path / "runs")
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2
    assert errors == ["error: model.builder 'tiny-sd9' is not known; choose one of: " + ", ".join(BUILDERS)]
