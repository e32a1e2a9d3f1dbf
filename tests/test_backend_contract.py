"""The backend contract, one suite for every backend available here: the tiny model, fixed latents.

Every backend: images are uint8 (N, H, W, 3) and C-contiguous, the same batch gives the same images,
a batch of N equals N single runs, and `close()` twice is fine. Every backend that runs the model
also gives the images diffusers eager gives, within the stated tolerance below; a backend that
changes them further fails. (The fake backend draws its images from the sample index, so parity
with a model does not apply to it.) A backend whose optional dependency is missing is skipped with
the install hint. TensorRT needs a GPU and has its own tests (tests/test_tensorrt.py).

Run `python -m pytest tests/test_backend_contract.py -k parity -s` to see the parity figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from backends.base import Backend, BackendError, ModelSpec, PromptBatch
from backends.diffusers_eager import DiffusersEagerBackend, DiffusersEagerOptions
from backends.models.tiny_model import tiny_latent_shape
from backends.registry import backend_class
from harness.studies.compare import Parity, image_parity

# A batch of N against N single runs, in uint8 steps: as for diffusers eager (tests/test_diffusers_eager.py).
BATCH_MAX_ABS_DIFF = 1
BATCH_MAX_DIFFERING_FRACTION = 1e-3

# Parity with diffusers eager, float32 on the CPU, uint8 images of the tiny model. Measured here on a
# batch of 8: torch-compile (inductor) max 1, mean 4e-5 to 8e-5; onnxruntime max 1, mean 2e-5,
# PSNR 95 dB. bfloat16 eager against float32 eager, for scale, is max 6, mean 0.8 (PSNR about 45 dB):
# it fails this tolerance, as it should.
PARITY_MAX_ABS_DIFF = 2
PARITY_MEAN_ABS_DIFF = 0.01
PARITY_MIN_PSNR_DB = 60.0

# How each backend is built here: small and fast on 2 cores. torch-compile compiles the repeated
# blocks only (regional), for the two batch sizes the suite sends (2 is padded to 3).
BACKEND_OPTIONS: dict[str, dict[str, Any]] = {
    "diffusers-eager": {"num_threads": 0},
    "torch-compile": {"num_threads": 0, "regional": True, "warmup_batch_sizes": (1, 3)},
    "onnxruntime": {"num_threads": 1},
    "fake": {},
}
MODEL_FREE = {"fake"}

NEGATIVE = "normal quality, low quality, worst quality, low res, blurry, nsfw, nude"
PROMPTS = (
    "a red bicycle leaning against a brick wall",
    "two dogs playing in the snow",
    "a bowl of soup on a wooden table",
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def latents(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *tiny_latent_shape())).astype(np.float32)


def make_batch(prompts: tuple[str, ...], lat: np.ndarray, indices: tuple[int, ...] | None = None) -> PromptBatch:
    n = len(prompts)
    return PromptBatch(indices or tuple(range(n)), prompts, (NEGATIVE,) * n, lat)


def build(name: str, spec: ModelSpec) -> Any:
    try:
        cls = backend_class(name)
    except BackendError as exc:  # an optional dependency that is not installed
        pytest.skip(str(exc))
    return cls(spec, cls.Options(**BACKEND_OPTIONS[name]))


@pytest.fixture(scope="module", params=list(BACKEND_OPTIONS))
def backend(request: pytest.FixtureRequest, spec: ModelSpec) -> Iterator[Any]:
    b = build(request.param, spec)
    b.load()
    b.warmup(make_batch(PROMPTS, latents(3)))
    yield b
    b.close()


@pytest.fixture(scope="module")
def reference(spec: ModelSpec) -> Iterator[DiffusersEagerBackend]:
    b = DiffusersEagerBackend(spec, DiffusersEagerOptions(num_threads=0))
    b.load()
    yield b
    b.close()


def assert_parity(reference_images: np.ndarray, images: np.ndarray, what: str) -> Parity:
    """Fail unless `images` are within the stated tolerance of the reference; print the figures."""
    parity = image_parity(reference_images, images)
    print(f"\nparity {what} against diffusers-eager: {parity.describe()}")
    assert parity.max_abs_diff <= PARITY_MAX_ABS_DIFF, f"{what}: {parity.describe()}"
    assert parity.mean_abs_diff <= PARITY_MEAN_ABS_DIFF, f"{what}: {parity.describe()}"
    assert parity.psnr_db is None or parity.psnr_db >= PARITY_MIN_PSNR_DB, f"{what}: {parity.describe()}"
    return parity


# -- the contract ------------------------------------------------------------------------------


def test_is_a_backend(backend: Any) -> None:
    assert isinstance(backend, Backend)
    described = backend.describe()
    assert described["backend"] == backend.name


def test_images_are_uint8_nhwc_and_c_contiguous(backend: Any) -> None:
    out = backend.generate(make_batch(PROMPTS, latents(3)))
    assert out.images.dtype == np.uint8
    assert out.images.shape == (3, 64, 64, 3)
    assert out.images.flags["C_CONTIGUOUS"]
    assert out.images.std() > 5, "images should not be flat"


def test_the_same_batch_gives_the_same_images(backend: Any) -> None:
    batch = make_batch(PROMPTS[:1], latents(1, seed=7))
    np.testing.assert_array_equal(backend.generate(batch).images, backend.generate(batch).images)


def test_a_batch_equals_single_runs(backend: Any) -> None:
    lat = latents(3, seed=1)
    batched = backend.generate(make_batch(PROMPTS, lat)).images.astype(np.int16)
    singles = np.concatenate(
        [backend.generate(make_batch(PROMPTS[i : i + 1], lat[i : i + 1], (i,))).images for i in range(3)]
    ).astype(np.int16)
    diff = np.abs(batched - singles)
    assert diff.max() <= BATCH_MAX_ABS_DIFF
    assert np.count_nonzero(diff) <= BATCH_MAX_DIFFERING_FRACTION * diff.size


def test_a_batch_smaller_than_the_warm_up_batch_works(backend: Any) -> None:
    # torch-compile pads 2 up to its compiled 3; every backend must return exactly 2 images.
    out = backend.generate(make_batch(PROMPTS[:2], latents(2, seed=2)))
    assert out.images.shape == (2, 64, 64, 3)


def test_latents_and_prompts_reach_the_model(backend: Any) -> None:
    if backend.name in MODEL_FREE:
        pytest.skip(f"{backend.name} runs no model")
    a = backend.generate(make_batch(PROMPTS[:1], latents(1, seed=3))).images.astype(np.int16)
    b = backend.generate(make_batch(PROMPTS[:1], latents(1, seed=4))).images.astype(np.int16)
    c = backend.generate(make_batch(PROMPTS[1:2], latents(1, seed=3))).images.astype(np.int16)
    assert np.abs(a - b).mean() > 10
    assert not np.array_equal(a, c)


def test_parity_with_diffusers_eager(backend: Any, reference: DiffusersEagerBackend) -> None:
    if backend.name in MODEL_FREE:
        pytest.skip(f"{backend.name} draws images from the sample index, not from the model")
    if backend.name == "diffusers-eager":
        pytest.skip("diffusers-eager is the reference")
    for seed, prompts in ((5, PROMPTS), (6, PROMPTS[::-1])):
        batch = make_batch(prompts, latents(3, seed=seed))
        assert_parity(reference.generate(batch).images, backend.generate(batch).images, f"{backend.name} seed {seed}")


def test_close_twice_is_fine_and_generate_after_close_is_an_error(spec: ModelSpec, backend: Any) -> None:
    b = build(backend.name, spec)
    b.load()
    b.close()
    b.close()
    if backend.name in MODEL_FREE:
        return
    assert b.describe()["loaded"] is False
    with pytest.raises(BackendError, match="not loaded"):
        b.generate(make_batch(PROMPTS[:1], latents(1)))


def test_close_before_load_is_fine(spec: ModelSpec, backend: Any) -> None:
    build(backend.name, spec).close()


# -- the suite can fail --------------------------------------------------------------------------


def test_parity_fails_for_changed_images(reference: DiffusersEagerBackend) -> None:
    images = reference.generate(make_batch(PROMPTS, latents(3, seed=5))).images
    shifted = images.copy()
    shifted[0, :8, :8] = (shifted[0, :8, :8].astype(np.int16) + 3).clip(0, 255).astype(np.uint8)
    with pytest.raises(AssertionError):
        assert_parity(images, shifted, "one 8 x 8 patch 3 steps brighter")
    drifted = (images.astype(np.int16) + np.random.default_rng(0).integers(-1, 2, images.shape)).clip(0, 255)
    with pytest.raises(AssertionError):
        assert_parity(images, drifted.astype(np.uint8), "every value +-1")
