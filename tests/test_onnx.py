"""The ONNX export (shared by onnxruntime and tensorrt) and the onnxruntime backend's own behaviour.
Its images are checked against diffusers eager in tests/test_backend_contract.py."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install -e '.[onnx]'")

import onnxruntime as ort  # noqa: E402

from backends.base import BackendError, ModelSpec, PromptBatch  # noqa: E402
from backends.models.tiny_model import tiny_latent_shape  # noqa: E402
from backends.onnx_family.export import (  # noqa: E402
    COMPONENTS,
    INPUTS,
    ExportOptions,
    component_dtypes,
    component_rows,
    ensure_onnx,
    export_component,
    folder_digest,
    input_shapes,
    latent_size,
    read_sdxl_folder,
)
from backends.onnx_family.onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeOptions  # noqa: E402
from backends.onnx_family.sdxl_loop import SDXLLoop  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def seq_lens(spec: ModelSpec) -> dict[str, int]:
    return SDXLLoop(spec, read_sdxl_folder(spec, "test"), torch.device("cpu"), "test").seq_lens


def make_batch(n: int, seed: int = 0) -> PromptBatch:
    lat = np.random.default_rng(seed).standard_normal((n, *tiny_latent_shape())).astype(np.float32)
    prompts = ("a red bicycle", "two dogs playing in the snow", "a bowl of soup")[:n]
    return PromptBatch(tuple(range(n)), prompts, ("low quality",) * n, lat)


# -- the export ------------------------------------------------------------------------------------


def test_the_export_is_cached_by_content(spec: ModelSpec, seq_lens: dict[str, int], harness_cache: Path) -> None:
    folder = read_sdxl_folder(spec, "test")
    first = ensure_onnx(spec, ExportOptions(), folder=folder, seq_lens=seq_lens, who="test")
    again = ensure_onnx(spec, ExportOptions(), folder=folder, seq_lens=seq_lens, who="test")
    assert again.cache_hit and again.export_s == 0.0 and again.key == first.key and again.folder == first.folder
    assert first.folder.parent == harness_cache / "onnx"
    record = json.loads((first.folder / "export.json").read_text())
    assert set(record["components"]) == set(COMPONENTS)
    assert record["components"]["text_encoder_2"]["outputs"] == ["hidden_states", "text_embeds"]
    assert record["components"]["text_encoder"]["outputs"] == ["hidden_states"]
    assert all(p.is_file() for p in first.files.values())


def test_the_files_take_the_shapes_the_engine_profiles_use(spec: ModelSpec, seq_lens: dict[str, int]) -> None:
    folder = read_sdxl_folder(spec, "test")
    onnx_model = ensure_onnx(spec, ExportOptions(), folder=folder, seq_lens=seq_lens, who="test")
    for name in COMPONENTS:
        session = ort.InferenceSession(str(onnx_model.files[name]), providers=["CPUExecutionProvider"])
        declared = {i.name: i.shape for i in session.get_inputs()}
        assert list(declared) == list(INPUTS[name])
        expected = input_shapes(name, component_rows(name, 3, True), folder, seq_lens, latent_size(spec, folder))
        for input_name, shape in expected.items():
            assert isinstance(declared[input_name][0], str), f"{name}.{input_name}: batch dimension must be dynamic"
            assert tuple(declared[input_name][1:]) == shape[1:], f"{name}.{input_name}"


def test_the_key_follows_options_and_content(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    weights = tmp_path / "unet" / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    a = folder_digest(tmp_path, ["unet"], tmp_path / "cache")
    assert folder_digest(tmp_path, ["unet"], tmp_path / "cache") == a  # memoised
    weights.write_bytes(b"\x01" * 64)
    assert folder_digest(tmp_path, ["unet"], tmp_path / "cache") != a


def test_float16_keeps_the_vae_in_float32_where_sdxl_does(spec: ModelSpec) -> None:
    folder = read_sdxl_folder(spec, "test")
    upcast = replace(folder, vae={**folder.vae, "force_upcast": True})
    assert component_dtypes(upcast, "float16") == {
        "text_encoder": "float16",
        "text_encoder_2": "float16",
        "unet": "float16",
        "vae_decoder": "float32",
    }
    assert component_dtypes(upcast, "bfloat16")["vae_decoder"] == "bfloat16"
    assert component_dtypes(replace(folder, vae={**folder.vae, "force_upcast": False}), "float16")["vae_decoder"] == (
        "float16"
    )


def test_dynamo_and_torchscript_exports_agree(spec: ModelSpec, seq_lens: dict[str, int], tmp_path: Path) -> None:
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript (the onnx extra)")
    folder = read_sdxl_folder(spec, "test")
    ids = np.random.default_rng(0).integers(0, 300, (2, seq_lens["text_encoder_2"]), dtype=np.int64)
    results = []
    for exporter in ("torchscript", "dynamo"):
        path = tmp_path / exporter / "model.onnx"
        path.parent.mkdir()
        export_component("text_encoder_2", spec, ExportOptions(exporter=exporter), folder, seq_lens, path, "test")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        results.append(session.run(None, {"input_ids": ids}))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"pipeline": "FluxPipeline"},
            "pipeline 'FluxPipeline' is not supported.*supported: StableDiffusionXLPipeline",
        ),
        ({"weights": "random"}, "model weights 'random' are not supported"),
        ({"latent_layout": "flux-packed"}, "latent layout 'flux-packed' is not supported"),
    ],
)
def test_unsupported_models_are_refused(spec: ModelSpec, change: dict, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        read_sdxl_folder(replace(spec, **change), "onnxruntime")
    with pytest.raises(BackendError, match=f"^onnxruntime: {message}"):  # already when it is built
        OnnxRuntimeBackend(replace(spec, **change))


def test_a_folder_of_another_pipeline_is_refused(spec: ModelSpec, tmp_path: Path) -> None:
    shutil.copy(Path(spec.path) / "model_index.json", tmp_path / "model_index.json")
    index = json.loads((tmp_path / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPipeline"
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(BackendError, match="holds a 'StableDiffusionPipeline'; supported: StableDiffusionXLPipeline"):
        read_sdxl_folder(replace(spec, path=str(tmp_path)), "onnxruntime")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dtype": "int8"}, "export dtype 'int8' is not supported"),
        ({"exporter": "tf2onnx"}, "exporter 'tf2onnx' is not supported; choose one of: torchscript, dynamo"),
        ({"opset": 11}, "opset 11 is not supported"),
    ],
)
def test_bad_export_options(options: dict, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        ExportOptions(**options).check("test")


# -- the onnxruntime backend -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"providers": ("NoSuchExecutionProvider",)}, "NoSuchExecutionProvider not available.*available: "),
        ({"providers": ()}, "providers is empty"),
        ({"dtype": "float16"}, "float16' with the CPUExecutionProvider is not supported"),
        ({"dtype": "bfloat16"}, "dtype 'bfloat16' is not supported; choose one of: float32, float16"),
        ({"graph_optimization_level": "max"}, "graph_optimization_level 'max' is not supported"),
        ({"num_threads": -3}, "num_threads -3 is not allowed"),
    ],
)
def test_bad_onnxruntime_options(options: dict, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        OnnxRuntimeOptions(**options)


def test_pretokenized_prompts_give_the_same_images(spec: ModelSpec) -> None:
    b = OnnxRuntimeBackend(replace(spec, pretokenize=True), OnnxRuntimeOptions(num_threads=1))
    b.load()
    try:
        batch = make_batch(2, seed=4)
        encoded = b.preprocess_prompts(batch.prompts, batch.negative_prompts)
        assert encoded is not None and len(encoded) == 2
        with_ids = replace(batch, encoded=tuple(encoded))
        first = b.generate(batch)
        np.testing.assert_array_equal(first.images, b.generate(with_ids).images)
        # the loop reports where its time went, as diffusers-eager does
        assert list(first.stage_times_ns) == ["text_encode", "denoise", "vae_decode", "to_uint8"]
        assert all(ns > 0 for ns in first.stage_times_ns.values())
        assert len(first.step_times_ns) == spec.steps
        assert abs(sum(first.step_times_ns) - first.stage_times_ns["denoise"]) < 0.05 * first.stage_times_ns["denoise"]
        described = b.describe()
        assert described["providers"]["unet"][0] == "CPUExecutionProvider"
        assert set(described["build_s"]) == {"onnx_export", "session_create"}
    finally:
        b.close()


def test_latents_of_the_wrong_size_are_an_error(spec: ModelSpec) -> None:
    b = OnnxRuntimeBackend(spec, OnnxRuntimeOptions(num_threads=1))
    b.load()
    try:
        c, h, w = tiny_latent_shape()
        wrong = PromptBatch((0,), ("a cat",), ("",), np.zeros((1, c, h // 2, w // 2), dtype=np.float32))
        with pytest.raises(BackendError, match=r"latents of shape \(1, 4, 8, 8\) do not fit the model"):
            b.generate(wrong)
    finally:
        b.close()
