"""The diffusers-eager backend on the tiny model: the backend contract, errors, uint8 rule."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.base import Backend, BackendError, ModelSpec, PromptBatch
from backends.diffusers_eager import DiffusersEagerBackend, DiffusersEagerOptions, to_uint8_nhwc
from backends.models.tiny_model import tiny_latent_shape
from backends.registry import backend_class

# A batch of N against N single runs, float32 on the CPU, in uint8 units. Measured here: at most 1,
# on 4 of 98,304 values for a batch of 8 (batched kernels sum in another order); a batch of 3 was
# bit-identical to its singles.
BATCH_MAX_ABS_DIFF = 1
BATCH_MAX_DIFFERING_FRACTION = 1e-3

NEGATIVE = "normal quality, low quality, worst quality, low res, blurry, nsfw, nude"
PROMPTS = (
    "a red bicycle leaning against a brick wall",
    "two dogs playing in the snow",
    "a bowl of soup on a wooden table",
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def backend(spec: ModelSpec) -> Iterator[DiffusersEagerBackend]:
    # num_threads=0 leaves torch's thread count as one_torch_thread set it.
    b = DiffusersEagerBackend(spec, DiffusersEagerOptions(num_threads=0))
    b.load()
    yield b
    b.close()


def latents(n: int, seed: int = 0) -> np.ndarray:
    shape = (n, *tiny_latent_shape())
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def make_batch(prompts: tuple[str, ...], lat: np.ndarray, negative: str = NEGATIVE) -> PromptBatch:
    n = len(prompts)
    return PromptBatch(tuple(range(n)), prompts, (negative,) * n, lat)


# -- the contract ----------------------------------------------------------------------------------


def test_is_a_registered_backend(backend: DiffusersEagerBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend_class("diffusers-eager") is DiffusersEagerBackend
    assert DiffusersEagerBackend.Options is DiffusersEagerOptions
    assert DiffusersEagerBackend.name == "diffusers-eager"


def test_images_are_uint8_nhwc_and_c_contiguous(backend: DiffusersEagerBackend) -> None:
    out = backend.generate(make_batch(PROMPTS[:2], latents(2)))
    assert out.images.dtype == np.uint8
    assert out.images.shape == (2, 64, 64, 3)
    assert out.images.flags["C_CONTIGUOUS"]
    assert out.images.std() > 5, "images should not be flat"
    assert set(out.stage_times_ns) == {"text_encode", "denoise", "vae_decode", "to_uint8"}
    assert all(ns > 0 for ns in out.stage_times_ns.values())


def test_vae_slicing_decodes_one_image_at_a_time_with_the_same_images(
    spec: ModelSpec, backend: DiffusersEagerBackend
) -> None:
    sliced = DiffusersEagerBackend(spec, DiffusersEagerOptions(num_threads=0, vae_slicing=True))
    sliced.load()
    try:
        assert sliced._pipe.vae.use_slicing and not backend._pipe.vae.use_slicing
        batch = make_batch(PROMPTS, latents(3))
        diff = np.abs(sliced.generate(batch).images.astype(int) - backend.generate(batch).images.astype(int))
        assert diff.max() <= BATCH_MAX_ABS_DIFF and np.count_nonzero(diff) <= BATCH_MAX_DIFFERING_FRACTION * diff.size
        assert sliced.describe()["options"]["vae_slicing"] is True
    finally:
        sliced.close()


def test_same_latents_give_identical_images(backend: DiffusersEagerBackend) -> None:
    batch = make_batch(PROMPTS[:1], latents(1))
    np.testing.assert_array_equal(backend.generate(batch).images, backend.generate(batch).images)


def test_a_shared_read_only_latent_is_used_and_left_unchanged(
    backend: DiffusersEagerBackend,
) -> None:
    one = latents(1, seed=6)
    one.setflags(write=False)
    shared = np.broadcast_to(one, (2, *one.shape[1:]))  # MLPerf: one latent for every prompt
    out = backend.generate(make_batch((PROMPTS[0], PROMPTS[0]), shared)).images
    np.testing.assert_array_equal(one, latents(1, seed=6))
    assert np.abs(out[0].astype(np.int16) - out[1]).max() <= BATCH_MAX_ABS_DIFF


def test_a_batch_equals_single_runs(backend: DiffusersEagerBackend) -> None:
    lat = latents(3, seed=1)
    batched = backend.generate(make_batch(PROMPTS, lat)).images.astype(np.int16)
    singles = np.concatenate(
        [backend.generate(make_batch(PROMPTS[i : i + 1], lat[i : i + 1])).images for i in range(3)]
    ).astype(np.int16)
    diff = np.abs(batched - singles)
    assert diff.max() <= BATCH_MAX_ABS_DIFF
    assert np.count_nonzero(diff) <= BATCH_MAX_DIFFERING_FRACTION * diff.size


def test_a_batch_keeps_its_order(backend: DiffusersEagerBackend) -> None:
    lat = latents(2, seed=2)
    forward = backend.generate(make_batch(PROMPTS[:2], lat)).images.astype(np.int16)
    reverse = backend.generate(make_batch(PROMPTS[1::-1], lat[::-1].copy())).images
    assert np.abs(forward - reverse[::-1]).max() <= BATCH_MAX_ABS_DIFF


def test_different_latents_give_different_images(backend: DiffusersEagerBackend) -> None:
    a = backend.generate(make_batch(PROMPTS[:1], latents(1, seed=3))).images.astype(np.int16)
    b = backend.generate(make_batch(PROMPTS[:1], latents(1, seed=4))).images.astype(np.int16)
    assert np.abs(a - b).mean() > 10


def test_prompts_reach_the_model(backend: DiffusersEagerBackend) -> None:
    lat = latents(1, seed=5)
    a = backend.generate(make_batch(PROMPTS[:1], lat)).images
    b = backend.generate(make_batch(PROMPTS[1:2], lat)).images
    c = backend.generate(make_batch(PROMPTS[:1], lat, negative="")).images
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_latents_that_do_not_fit_the_size_are_an_error(backend: DiffusersEagerBackend) -> None:
    c, h, w = tiny_latent_shape()
    wrong = np.zeros((1, c, h // 2, w // 2), dtype=np.float32)
    with pytest.raises(BackendError, match=r"expected \(1, 3, 64, 64\)"):
        backend.generate(make_batch(PROMPTS[:1], wrong))


def test_describe(backend: DiffusersEagerBackend) -> None:
    d = backend.describe()
    assert d["backend"] == "diffusers-eager"
    assert d["pipeline_class"] == "StableDiffusionXLPipeline"
    assert d["scheduler_class"] == "EulerDiscreteScheduler"
    assert d["denoiser_class"] == "UNet2DConditionModel"
    assert d["device"] == "cpu"
    assert d["dtype"] == "float32"
    assert d["num_threads"] == torch.get_num_threads()
    assert d["torch"] == torch.__version__
    assert d["diffusers"]
    assert d["transformers"]
    assert d["loaded"] is True


# -- options and loading ---------------------------------------------------------------------------


def test_scheduler_can_be_replaced(spec: ModelSpec) -> None:
    b = DiffusersEagerBackend(replace(spec, scheduler="DDIMScheduler"), DiffusersEagerOptions(num_threads=0))
    b.load()
    try:
        assert b.describe()["scheduler_class"] == "DDIMScheduler"
        assert b.generate(make_batch(PROMPTS[:1], latents(1))).images.shape == (1, 64, 64, 3)
    finally:
        b.close()


def test_bfloat16_stays_close_to_float32(spec: ModelSpec, backend: DiffusersEagerBackend) -> None:
    batch = make_batch(PROMPTS[:1], latents(1))
    b = DiffusersEagerBackend(spec, DiffusersEagerOptions(dtype="bfloat16", num_threads=0))
    b.load()
    try:
        low = b.generate(batch).images.astype(np.int16)
    finally:
        b.close()
    full = backend.generate(batch).images.astype(np.int16)
    # Measured here: max 6, mean 0.8 over a batch of 8. A real model would drift more.
    assert np.abs(low - full).mean() < 2


def test_auto_threads_leave_one_core(spec: ModelSpec) -> None:
    before = torch.get_num_threads()
    b = DiffusersEagerBackend(spec, DiffusersEagerOptions(num_threads=-1))
    try:
        b.load()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        assert torch.get_num_threads() == max(1, (cores or 1) - 1)
        assert b.describe()["num_threads"] == torch.get_num_threads()
    finally:
        b.close()
        torch.set_num_threads(before)


def test_cuda_without_cuda_is_an_error_not_a_fallback(spec: ModelSpec) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here; the no-fallback error cannot be provoked")
    b = DiffusersEagerBackend(spec, DiffusersEagerOptions(device="cuda"))
    with pytest.raises(BackendError, match="no silent fallback"):
        b.load()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runs_the_contract(spec: ModelSpec) -> None:
    b = DiffusersEagerBackend(spec, DiffusersEagerOptions(device="cuda"))
    b.load()
    try:
        batch = make_batch(PROMPTS[:2], latents(2))
        first = b.generate(batch).images
        assert first.shape == (2, 64, 64, 3)
        assert first.dtype == np.uint8
        np.testing.assert_array_equal(first, b.generate(batch).images)
        assert b.describe()["device"].startswith("cuda")
    finally:
        b.close()
        b.close()


def test_missing_folder_names_the_path(spec: ModelSpec, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    b = DiffusersEagerBackend(replace(spec, path=str(missing)), DiffusersEagerOptions())
    with pytest.raises(BackendError, match=str(missing)):
        b.load()


def test_folder_without_model_index_names_the_path(spec: ModelSpec, tmp_path: Path) -> None:
    b = DiffusersEagerBackend(replace(spec, path=str(tmp_path)), DiffusersEagerOptions())
    with pytest.raises(BackendError, match=rf"{tmp_path}.*model_index\.json"):
        b.load()


@pytest.mark.parametrize("name", ["NoSuchPipeline", "AutoencoderKL", "not a name"])
def test_unknown_pipeline_class_is_an_error(spec: ModelSpec, name: str) -> None:
    b = DiffusersEagerBackend(replace(spec, pipeline=name), DiffusersEagerOptions())
    with pytest.raises(BackendError, match=name):
        b.load()


def test_unknown_scheduler_class_is_an_error(spec: ModelSpec) -> None:
    b = DiffusersEagerBackend(replace(spec, scheduler="NoSuchScheduler"), DiffusersEagerOptions(num_threads=0))
    with pytest.raises(BackendError, match="NoSuchScheduler"):
        b.load()


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [("dtype", "float64", "bfloat16"), ("device", "tpu", "cuda:N"), ("num_threads", -2, "-1")],
)
def test_bad_options_name_the_allowed_values(field: str, value: object, allowed: str) -> None:
    with pytest.raises(BackendError, match=allowed):
        DiffusersEagerOptions(**{field: value})


def test_close_twice_is_fine_and_generate_after_close_is_an_error(spec: ModelSpec) -> None:
    b = DiffusersEagerBackend(spec, DiffusersEagerOptions(num_threads=0))
    b.load()
    b.close()
    b.close()
    assert b.describe()["loaded"] is False
    with pytest.raises(BackendError, match="not loaded"):
        b.generate(make_batch(PROMPTS[:1], latents(1)))


def test_close_before_load_is_fine(spec: ModelSpec) -> None:
    DiffusersEagerBackend(spec, DiffusersEagerOptions()).close()


def test_pipelines_without_negative_prompts_ignore_them_and_say_so(
    backend: DiffusersEagerBackend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A distilled model without CFG (FLUX.2-klein) takes none; a prompt pack may still carry some.
    monkeypatch.setattr(backend, "_call_params", backend._call_params - {"negative_prompt"})
    monkeypatch.setattr(backend, "_warned_negative", False)
    with caplog.at_level("WARNING", logger="backends.diffusers_eager"):
        out = backend.generate(make_batch(PROMPTS[:1], latents(1)))
    assert any("takes no negative prompt" in r.getMessage() for r in caplog.records)
    empty = backend.generate(make_batch(PROMPTS[:1], latents(1), negative=""))
    np.testing.assert_array_equal(out.images, empty.images)


# -- the uint8 rule --------------------------------------------------------------------------------


def test_uint8_rule_is_the_mlperf_reference_rule() -> None:
    values = torch.tensor([0.0, 1 / 510, 0.5, 0.25, 1.0, 0.999], dtype=torch.float32)
    images = values.view(1, 1, 1, -1).expand(1, 3, 1, 6).contiguous()
    out = to_uint8_nhwc(images)
    assert out.shape == (1, 1, 6, 3)
    assert out.flags["C_CONTIGUOUS"]
    # Reference (mlcommons/inference text_to_image/coco.py): (x.float().numpy() * 255).round()
    # .astype(uint8); numpy rounds half to even, so 127.5 -> 128 and 0.5 -> 0.
    reference = (values.numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(out[0, 0, :, 0], reference)
    np.testing.assert_array_equal(out[0, 0, :, 0], [0, 0, 128, 64, 255, 255])


def _reference_uint8(images: torch.Tensor) -> np.ndarray:
    """The MLPerf reference's own arithmetic, in numpy on the host."""
    array = images.permute(0, 2, 3, 1).float().numpy()
    return np.ascontiguousarray(np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_uint8_rule_gives_the_reference_bytes_at_every_rounding_edge(dtype: torch.dtype) -> None:
    # Every half-way point k + 0.5 and the float32 neighbours on either side of it, plus random values:
    # the device-side conversion must round each exactly as numpy does.
    halves = ((torch.arange(256, dtype=torch.float64) + 0.5) / 255.0).float()
    edges = torch.cat([halves, torch.nextafter(halves, halves + 1), torch.nextafter(halves, halves - 1)])
    assert len(set(edges.tolist())) == len(edges)  # three distinct float32 inputs per half-way point
    values = torch.cat([edges, torch.rand(3000, generator=torch.Generator().manual_seed(0)), torch.tensor([0.0, 1.0])])
    values = values[: (values.numel() // 12) * 12].to(dtype)
    images = values.view(2, 3, 2, -1)
    np.testing.assert_array_equal(to_uint8_nhwc(images), _reference_uint8(images))
    assert to_uint8_nhwc(images).flags["C_CONTIGUOUS"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_uint8_rule_on_cuda_gives_the_reference_bytes() -> None:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    np.testing.assert_array_equal(to_uint8_nhwc(images.cuda()), _reference_uint8(images))


def test_uint8_rule_rejects_non_finite_pixels() -> None:
    images = torch.zeros(1, 3, 2, 2)
    images[0, 0, 0, 0] = float("nan")
    with pytest.raises(BackendError, match="non-finite"):
        to_uint8_nhwc(images)


def test_bfloat16_on_a_cpu_without_fast_bf16_is_refused_before_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    import backends.diffusers_eager as eager

    monkeypatch.setattr(eager, "cpu_bf16_is_fast", lambda: (False, "asked oneDNN"))
    with pytest.raises(BackendError) as refused:
        DiffusersEagerOptions(device="cpu", dtype="bfloat16")
    message = str(refused.value)
    assert "no fast bfloat16 kernels (asked oneDNN)" in message
    assert "50-115x slower than in float32" in message and "tools.bf16_cost" in message
    assert "backend.dtype=float32" in message and "backend.allow_slow_bf16=true" in message
    # not refused: float32 on that CPU, bfloat16 on a GPU
    DiffusersEagerOptions(device="cpu", dtype="float32")
    DiffusersEagerOptions(device="cuda", dtype="bfloat16")


def test_allow_slow_bf16_runs_bfloat16_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import backends.diffusers_eager as eager

    monkeypatch.setattr(eager, "cpu_bf16_is_fast", lambda: (False, "asked oneDNN"))
    with caplog.at_level("WARNING", logger="backends.diffusers_eager"):
        options = DiffusersEagerOptions(device="cpu", dtype="bfloat16", allow_slow_bf16=True)
    assert options.dtype == "bfloat16"
    assert any("50-115x slower" in r.getMessage() and "running it anyway" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN to hold to AVX2")
def test_cli_refuses_bfloat16_on_a_cpu_held_to_avx2(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONEDNN_MAX_CPU_ISA=AVX2 takes oneDNN's bfloat16 kernels away, as on a CPU without AVX-512:
    the detector must see it, and the run stop with one line before the model loads."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    run = run_cli("--scenario", "SingleStream", "--set", "backend.dtype=bfloat16")
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no fast bfloat16 kernels" in errors[0], run.stderr[-2000:]
    assert "load:" not in run.stderr  # the backend's load line: nothing was loaded
