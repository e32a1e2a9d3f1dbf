"""The torch-compile backend: options, warm-up per batch size, padding, no compile in timed calls,
and how the runner tells it the batch sizes. Its images are checked against eager in
tests/test_backend_contract.py (with inductor); here `compile_backend = "eager"` (dynamo traces, no
code generation) keeps the behaviour tests fast."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from backends.base import BackendError, ModelSpec, PromptBatch
from backends.diffusers_eager import DiffusersEagerBackend, DiffusersEagerOptions
from backends.models.tiny_model import tiny_latent_shape
from backends.registry import backend_class
from backends.torch_compile import TorchCompileBackend, TorchCompileOptions
from harness.config import resolve_config
from harness.errors import ConfigError
from harness.run.model import make_backend, model_spec, sut_batch_sizes

PROMPTS = ("a red bicycle leaning against a brick wall", "two dogs playing in the snow", "a bowl of soup")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_batch(n: int, seed: int = 0) -> PromptBatch:
    lat = np.random.default_rng(seed).standard_normal((n, *tiny_latent_shape())).astype(np.float32)
    return PromptBatch(tuple(range(n)), tuple(PROMPTS[i % 3] for i in range(n)), ("",) * n, lat)


@pytest.fixture(scope="module")
def traced(spec: ModelSpec) -> Iterator[TorchCompileBackend]:
    """UNet traced by dynamo for batch sizes 1 and 3 (no inductor code generation)."""
    b = TorchCompileBackend(
        spec, TorchCompileOptions(num_threads=0, compile_backend="eager", warmup_batch_sizes=(3, 1))
    )
    b.load()
    b.warmup(make_batch(2))
    yield b
    b.close()


def test_registered_with_its_options() -> None:
    assert backend_class("torch-compile") is TorchCompileBackend
    assert TorchCompileBackend.Options is TorchCompileOptions
    assert issubclass(TorchCompileOptions, DiffusersEagerOptions)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "fastest"}, "mode 'fastest' is not supported; choose one of: default, reduce-overhead"),
        ({"mode": "reduce-overhead"}, "uses CUDA graphs, which need a CUDA device"),
        ({"compile_backend": "tvm"}, "compile_backend 'tvm' is not supported"),
        ({"compile_backend": "eager", "mode": "max-autotune"}, "need compile_backend 'inductor'"),
        ({"warmup_batch_sizes": (0, 2)}, r"warmup_batch_sizes \[0, 2\] must all be >= 1"),
        ({"dtype": "float64"}, "^torch-compile: dtype 'float64' is not supported; choose one of"),
        ({"device": "tpu"}, "^torch-compile: device 'tpu' is not supported"),
    ],
)
def test_bad_options_are_one_clear_error(options: dict, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        TorchCompileOptions(**options)


def test_warm_up_compiles_each_batch_size_and_reports_it(traced: TorchCompileBackend) -> None:
    compile_info = traced.describe()["compile"]
    assert compile_info["batch_sizes"] == [1, 3]
    assert compile_info["modules"] == ["unet"]
    assert set(compile_info["compile_s"]) == {"1", "3"}
    for size in ("1", "3"):
        first, steady = compile_info["first_call_s"][size], compile_info["steady_call_s"][size]
        assert compile_info["compile_s"][size] == pytest.approx(max(0.0, first - steady), abs=2e-3)
        assert first > steady  # the first call traced the UNet
    assert traced.describe()["build_s"]["compile"] == pytest.approx(sum(compile_info["compile_s"].values()), abs=2e-3)


def test_a_smaller_batch_is_padded_and_its_images_kept(spec: ModelSpec, traced: TorchCompileBackend) -> None:
    batch = make_batch(2, seed=3)
    out = traced.generate(batch).images
    assert out.shape == (2, 64, 64, 3)
    assert traced.describe()["compile"]["padded_batches"].get("2->3", 0) >= 1
    eager = DiffusersEagerBackend(spec, DiffusersEagerOptions(num_threads=0))
    eager.load()
    try:
        ref = eager.generate(batch).images.astype(np.int16)
    finally:
        eager.close()
    assert np.abs(out.astype(np.int16) - ref).max() <= 1  # padding rows do not change the kept ones


def test_a_batch_larger_than_every_compiled_size_is_an_error(traced: TorchCompileBackend) -> None:
    with pytest.raises(BackendError, match=r"batch of 4 is larger than every warmed-up batch size \[1, 3\]"):
        traced.generate(make_batch(4))


def test_a_timed_call_that_would_compile_raises_instead(traced: TorchCompileBackend) -> None:
    c, h, w = tiny_latent_shape()
    odd = PromptBatch((0,), PROMPTS[:1], ("",), np.zeros((1, c, h // 2, w // 2), dtype=np.float32))
    with pytest.raises(BackendError, match="would compile inside a timed run"):
        traced.generate(odd)
    assert traced.generate(make_batch(1)).images.shape == (1, 64, 64, 3)  # still serves compiled shapes


def test_generate_before_warmup_is_an_error(spec: ModelSpec) -> None:
    b = TorchCompileBackend(spec, TorchCompileOptions(num_threads=0, compile_backend="eager"))
    with pytest.raises(BackendError, match="not loaded"):
        b.generate(make_batch(1))
    b.load()
    try:
        with pytest.raises(BackendError, match="before warmup"):
            b.generate(make_batch(1))
    finally:
        b.close()


def test_vae_decoder_and_text_encoders_compile_too(spec: ModelSpec) -> None:
    options = TorchCompileOptions(
        num_threads=0, compile_backend="eager", compile_vae=True, compile_text_encoders=True, warmup_batch_sizes=(1,)
    )
    b = TorchCompileBackend(spec, options)
    b.load()
    try:
        b.warmup(make_batch(1))
        assert b.describe()["compile"]["modules"] == ["unet", "vae.decoder", "text_encoder", "text_encoder_2"]
        assert b.generate(make_batch(1, seed=9)).images.shape == (1, 64, 64, 3)
    finally:
        b.close()


def test_regional_compilation_compiles_the_repeated_blocks(spec: ModelSpec) -> None:
    b = TorchCompileBackend(spec, TorchCompileOptions(num_threads=0, compile_backend="eager", regional=True))
    b.load()
    try:
        blocks = b.describe()["compile"]["regional_blocks"]
        assert list(blocks) == ["BasicTransformerBlock"] and blocks["BasicTransformerBlock"] > 0
    finally:
        b.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"regional": True, "compile_vae": True}, r"vae\.decoder \(Decoder\) needs its block classes"),
        ({"regional": True, "regional_blocks": ("NoSuchBlock",)}, r"found none of the blocks \['NoSuchBlock'\]"),
    ],
)
def test_regional_compilation_without_blocks_is_an_error(spec: ModelSpec, options: dict, message: str) -> None:
    b = TorchCompileBackend(spec, TorchCompileOptions(num_threads=0, compile_backend="eager", **options))
    try:
        with pytest.raises(BackendError, match=message):
            b.load()
    finally:
        b.close()


# -- the runner tells it the batch sizes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "sets", "expected"),
    [
        ("SingleStream", [], (1,)),
        ("Offline", ["sut.batch_size=4"], (4,)),
        ("Server", ["sut.max_batch_size=3"], (1, 2, 3)),
    ],
)
def test_the_runner_fills_in_the_batch_sizes_the_sut_sends(scenario: str, sets: list[str], expected: tuple) -> None:
    cfg = resolve_config("tiny", cli={"run.scenario": scenario, "run.backend": "torch-compile"}, sets=sets)
    assert sut_batch_sizes(cfg) == expected
    backend = make_backend(cfg, model_spec(cfg, "/nowhere"))
    assert backend.options.warmup_batch_sizes == expected  # type: ignore[attr-defined]


def test_the_user_can_choose_the_batch_sizes() -> None:
    sets = ["backend.warmup_batch_sizes=[1, 2, 4, 8]"]
    cfg = resolve_config("tiny", cli={"run.scenario": "Server", "run.backend": "torch-compile"}, sets=sets)
    assert make_backend(cfg, model_spec(cfg, "/nowhere")).options.warmup_batch_sizes == (1, 2, 4, 8)  # type: ignore[attr-defined]
    bad = resolve_config("tiny", cli={"run.backend": "torch-compile"}, sets=['backend.warmup_batch_sizes=[1, "a"]'])
    with pytest.raises(ConfigError, match=r"'backend.warmup_batch_sizes\[1\]' must be an integer"):
        make_backend(bad, model_spec(bad, "/nowhere"))


def test_backends_without_the_option_are_left_alone() -> None:
    cfg = resolve_config("tiny", cli={"run.backend": "diffusers-eager"})
    assert not hasattr(make_backend(cfg, model_spec(cfg, "/nowhere")).options, "warmup_batch_sizes")


def test_a_server_run_compiles_before_loadgen_starts(run_cli_in_process) -> None:
    # One compiled size: the Server's batches of 1 are padded up to 2.
    run = run_cli_in_process(
        "--backend",
        "torch-compile",
        "--scenario",
        "Server",
        "--set",
        "backend.compile_backend=eager",
        "--set",
        "backend.warmup_batch_sizes=[2]",
        "--set",
        "sut.max_batch_size=2",
        "--set",
        "loadgen.min_duration_ms=1000",
        "--set",
        "loadgen.min_query_count=8",
        "--set",
        "loadgen.server_target_qps=20",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    assert summary["status"] == "ok" and summary["samples_completed"] >= 8
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    compiled = manifest["backend"]["compile"]
    assert compiled["batch_sizes"] == [2]
    assert set(compiled["compile_s"]) == {"2"}
    assert manifest["backend"]["options"]["warmup_batch_sizes"] == [2]
    assert summary["peak_memory"]["cpu_rss_mib"] > 100
