"""Architecture-only runs: full-size pipelines from the published component configs, random weights.

Full size is checked on the meta device (no memory): every component's parameter count must equal
the count published for the real checkpoint, which pins the configs. A scaled-down copy of the SDXL
configs then runs through the CLI with `--set model.weights=random`, flagged in summary, manifest and
terminal; accuracy mode refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from backends.base import BackendError
from backends.models.random_weights import (
    build_from_folder,
    build_pipeline,
    offline_clip_tokenizer,
    offline_qwen2_tokenizer,
    offline_t5_tokenizer,
    read_component_configs,
)
from harness.config import PROJECT_ROOT, available_models, resolve_config
from tests.test_model_families import QUICK, run_main

COMPONENTS = PROJECT_ROOT / "configs" / "components"

# Parameter counts of the real checkpoints, from public sources (not from this code):
# SDXL base UNet 2,567,463,684 and the SD VAE 83,653,863 / CLIP ViT-L text 123,060,480 (widely
# quoted; a public pipeline report lists vae 83,653,863, SD 2.x text encoder 340,387,840 and SD 2.x
# UNet 865,910,724); SD 1.5 UNet 859,520,964; SD 3.5 Medium (a public training script annotates its
# components): vae 83,819,683, text_encoder 123,650,304, text_encoder_2 694,659,840, text_encoder_3
# 4,762,310,656, transformer 2,243,171,520; FLUX.1-dev transformer 11,901,408,320 (11.9 B).
PUBLISHED_PARAMETERS: dict[str, dict[str, int]] = {
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd21": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sd35-medium": {
        "transformer": 2_243_171_520,
        "vae": 83_819_683,
        "text_encoder": 123_650_304,
        "text_encoder_2": 694_659_840,
        "text_encoder_3": 4_762_310_656,
    },
    "flux1-dev": {
        "transformer": 11_901_408_320,
        "vae": 83_819_683,
        "text_encoder": 123_060_480,
        "text_encoder_2": 4_762_310_656,
    },
}
# Published only rounded: FLUX.2-klein "4B" (its transformer), Qwen3-4B "4.0B"; FLUX.1-schnell is
# FLUX.1-dev without the guidance embedder.
ROUNDED_PARAMETERS = {"flux2-klein-4b": {"transformer": (3.5e9, 4.5e9), "text_encoder": (3.95e9, 4.05e9)}}


def _model_config(model: str):
    return resolve_config(model).model


def _parameters(pipe) -> dict[str, int]:
    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }


@pytest.mark.parametrize("model", [m for m in available_models() if not m.startswith("tiny")])
def test_every_real_model_has_published_component_configs(model: str) -> None:
    m = _model_config(model)
    folder = PROJECT_ROOT / m.components
    model_index, configs = read_component_configs(folder)
    assert model_index["_class_name"] == m.pipeline
    assert m.hub_id, "the missing-weights message needs hub_id"
    for path in folder.glob("*.json"):
        source = json.loads(path.read_text())["_source"]
        assert len(source) > 40, f"{path}: say where the file was copied from"
    # The scheduler the model config names is the one the checkpoint ships.
    assert configs["scheduler"]["_class_name"] == m.scheduler
    # The latent the QSL makes fits the published VAE and denoiser.
    vae = configs["vae"]
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    patch = vae.get("patch_size", [1, 1])[0] if isinstance(vae.get("patch_size"), list) else 1
    assert m.vae_scale_factor == factor * patch
    assert m.latent_channels == vae["latent_channels"] * patch * patch
    denoiser = configs.get("transformer") or configs["unet"]
    packed = 4 if m.latent_layout == "flux-packed" else 1
    assert denoiser["in_channels"] == m.latent_channels * packed


@pytest.mark.parametrize(
    "model", ["sdxl", "sd15", "sd21", "sd35-medium", "flux1-schnell", "flux1-dev", "flux2-klein-4b"]
)
def test_full_size_architecture_matches_the_published_parameter_counts(model: str) -> None:
    m = _model_config(model)
    pipe = build_from_folder(m.pipeline, PROJECT_ROOT / m.components, device="meta", dtype=torch.bfloat16)
    counts = _parameters(pipe)
    assert all(p.dtype == torch.bfloat16 for p in pipe.components["vae"].parameters())
    for name, expected in PUBLISHED_PARAMETERS.get(model, {}).items():
        assert counts[name] == expected, f"{model} {name}"
    for name, (low, high) in ROUNDED_PARAMETERS.get(model, {}).items():
        assert low < counts[name] < high, f"{model} {name}: {counts[name]}"
    if model == "flux1-schnell":
        dev = build_from_folder("FluxPipeline", COMPONENTS / "flux1-dev", device="meta")
        guidance = sum(p.numel() for p in dev.transformer.time_text_embed.guidance_embedder.parameters())
        assert counts["transformer"] == _parameters(dev)["transformer"] - guidance


# Scaled down only where the CPU needs it: widths and depths. Every other key is the published one.
SDXL_SCALED = {
    "unet": {
        "block_out_channels": [32, 64, 64],
        "attention_head_dim": [1, 2, 2],
        "transformer_layers_per_block": [1, 1, 1],
        "layers_per_block": 1,
        "cross_attention_dim": 64,
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 32 + 6 * 8,
        "norm_num_groups": 16,
    },
    "vae": {"block_out_channels": [16, 32, 32, 32], "layers_per_block": 1, "norm_num_groups": 8},
    "text_encoder": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "projection_dim": 32,
    },
    "text_encoder_2": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "projection_dim": 32,
    },
}


@pytest.fixture
def scaled_sdxl(tmp_path: Path) -> Path:
    folder = tmp_path / "sdxl-scaled"
    folder.mkdir()
    for path in (COMPONENTS / "sdxl").glob("*.json"):
        config = json.loads(path.read_text())
        config.update(SDXL_SCALED.get(path.stem, {}))
        (folder / path.name).write_text(json.dumps(config))
    return folder


def test_a_random_build_is_seeded_in_the_target_dtype_and_leaves_the_rng_alone(scaled_sdxl: Path) -> None:
    model_index, configs = read_component_configs(scaled_sdxl)
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    a = build_pipeline("StableDiffusionXLPipeline", model_index, configs, dtype=torch.bfloat16, seed=0)
    assert torch.equal(torch.rand(3), expected), "building must not consume the caller's RNG"
    b = build_pipeline("StableDiffusionXLPipeline", model_index, configs, dtype=torch.bfloat16, seed=0)
    c = build_pipeline("StableDiffusionXLPipeline", model_index, configs, dtype=torch.bfloat16, seed=1)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
        assert all(t.dtype == torch.bfloat16 for t in sa.values() if t.is_floating_point()), name
    assert not torch.equal(a.unet.conv_in.weight, c.unet.conv_in.weight)
    assert a.config.force_zeros_for_empty_prompt is True  # options from model_index.json are kept


def test_a_pipeline_class_other_than_the_configs_is_refused() -> None:
    with pytest.raises(
        BackendError, match="'FluxPipeline' but the component configs are for 'StableDiffusionXLPipeline'"
    ):
        build_from_folder("FluxPipeline", COMPONENTS / "sdxl", device="meta")


def test_offline_tokenizers_give_valid_padded_ids() -> None:
    text = "A man riding a wave on top of a surfboard."
    clip = offline_clip_tokenizer()
    ids = clip(text, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77 and max(ids) < len(clip) <= 49408
    t5 = offline_t5_tokenizer()
    ids = t5(text, padding="max_length", max_length=256, truncation=True).input_ids
    assert len(ids) == 256 and ids[ids.index(1) + 1 :] == [0] * (255 - ids.index(1)) and 2 not in ids  # no <unk>
    qwen = offline_qwen2_tokenizer()
    chat = qwen.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert chat.startswith("<|im_start|>user\n" + text) and chat.endswith("<think>\n\n</think>\n\n")
    out = qwen(chat, padding="max_length", max_length=512, truncation=True)
    assert len(out.input_ids) == 512 and max(out.input_ids) < len(qwen) <= 151936
    assert 0 < sum(out.attention_mask) < 512


def test_the_cli_runs_random_weights_and_flags_them(
    scaled_sdxl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--model", "sdxl", "--set", "model.weights=random", "--set", f"model.components={scaled_sdxl}",
        "--set", "backend.device=cpu", "--set", "backend.dtype=float32",
        "--set", "model.height=64", "--set", "model.width=64", "--set", "model.steps=2", "--set", "sut.batch_size=2",
        *QUICK,
    ]  # fmt: skip
    code, run_dir = run_main(*args, out=tmp_path / "runs")
    assert code == 0 and run_dir is not None
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["samples_completed"] >= 6
    assert summary["weights"] == "random"
    assert summary["valid_for_submission"] is False
    assert any("random weights" in b for b in summary["submission_blockers"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model"]["weights_source"]["kind"] == "random"
    assert manifest["model"]["weights_source"]["components"] == str(scaled_sdxl)
    assert manifest["backend"]["weights"] == "random" and manifest["backend"]["denoiser"] == "unet"
    assert "RANDOM" in capsys.readouterr().out  # the terminal summary says so


def test_accuracy_mode_refuses_random_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_main("--model", "sdxl", "--mode", "accuracy", "--set", "model.weights=random", out=tmp_path / "r")
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2
    assert len(errors) == 1 and "accuracy mode needs trained weights" in errors[0] and "'random'" in errors[0]


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("model", ["sdxl", "flux1-schnell", "flux2-klein-4b"])
def test_missing_weights_name_what_to_download(
    model: str, empty_hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run_main("--model", model, "--set", "backend.device=cpu", out=tmp_path / "runs")
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    hub_id = _model_config(model).hub_id
    assert code == 2 and len(errors) == 1
    assert f"download {hub_id}" in errors[0] and "--model-path" in errors[0] and "model.weights=random" in errors[0]


def test_weights_in_the_local_hub_cache_are_found_offline(empty_hub_cache: Path) -> None:
    from harness.run.model import resolve_model_path

    cfg = resolve_config("sd15")
    repo = empty_hub_cache / ("models--" + cfg.model.hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    assert Path(resolve_model_path(cfg)) == snapshot


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "model.weights=random"], "model 'tiny' has no published component configs"),
        (["--model", "sdxl", "--model-path", ".", "--set", "model.weights=random"], "drop --model-path"),
        (["--set", "model.weights=randm"], "model.weights 'randm' is not allowed; choose one of: pretrained, random"),
        (
            ["--model", "sdxl", "--set", "model.weights=random", "--set", "backend.device=cpu"]
            + ["--set", "model.components=/nowhere"],
            "/nowhere",
        ),
    ],
)
def test_bad_random_weight_requests_are_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run_main(*args, out=tmp_path / "runs")
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0], errors
