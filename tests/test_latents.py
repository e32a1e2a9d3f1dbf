"""Fixed latents: files, diffusers-compatible seeding, and the per-sample cache the QSL drives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.data.latents import LatentSource, load_latent_file, seeded_latents
from harness.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MLPERF_LATENTS = PROJECT_ROOT.parent / "shared" / "data" / "mlperf-sdxl" / "latents.npy"
SHAPE = (4, 8, 8)


# -- seeded_latents --------------------------------------------------------------------------------


def test_seeded_latents_shape_dtype_determinism() -> None:
    a = seeded_latents((2, *SHAPE), 7)
    assert a.shape == (2, *SHAPE)
    assert a.dtype == np.float32
    assert a.flags.c_contiguous
    np.testing.assert_array_equal(a, seeded_latents((2, *SHAPE), 7))
    assert not np.array_equal(a, seeded_latents((2, *SHAPE), 8))


def test_seeded_latents_match_torch_randn() -> None:
    # diffusers' randn_tensor on the CPU with one generator is exactly torch.randn with that generator.
    expected = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    np.testing.assert_array_equal(seeded_latents((1, *SHAPE), 3), expected.numpy())


@pytest.mark.skipif(
    not MLPERF_LATENTS.is_file(), reason=f"MLPerf latents not found at {MLPERF_LATENTS} (../shared is absent)"
)
def test_seeded_latents_regenerate_mlperf_latents() -> None:
    reference = np.load(MLPERF_LATENTS)
    regenerated = seeded_latents((1, 4, 128, 128), 0)
    assert regenerated.shape == reference.shape == (1, 4, 128, 128)
    # The shared README measured up to 2.4e-7 per element between the file and a regeneration today.
    assert np.abs(regenerated - reference).max() < 1e-6


# -- load_latent_file ------------------------------------------------------------------------------


def test_npy_round_trip(tmp_path: Path) -> None:
    array = seeded_latents((3, *SHAPE), 1)
    np.save(tmp_path / "l.npy", array)
    loaded = load_latent_file(tmp_path / "l.npy")
    assert loaded.dtype == np.float32 and loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, array)


def test_pt_round_trip(tmp_path: Path) -> None:
    array = seeded_latents((2, *SHAPE), 1)
    torch.save(torch.from_numpy(array), tmp_path / "l.pt")
    loaded = load_latent_file(tmp_path / "l.pt")
    assert loaded.dtype == np.float32 and loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, array)


def test_non_contiguous_and_float64_become_float32_contiguous(tmp_path: Path) -> None:
    array = seeded_latents((1, 8, 8, 4), 1).transpose(0, 3, 1, 2)  # a view, not C-contiguous
    np.save(tmp_path / "a.npy", array.astype(np.float64))
    torch.save(torch.from_numpy(np.ascontiguousarray(array)).permute(0, 1, 3, 2), tmp_path / "b.pt")
    for name, expected in (("a.npy", array), ("b.pt", array.transpose(0, 1, 3, 2))):
        loaded = load_latent_file(tmp_path / name)
        assert loaded.dtype == np.float32 and loaded.flags.c_contiguous
        np.testing.assert_array_equal(loaded, expected)


def test_latent_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"extension '\.bin'; allowed: \['\.npy', '\.pt'\]"):
        load_latent_file(tmp_path / "l.bin")
    with pytest.raises(ConfigError, match="does not exist"):
        load_latent_file(tmp_path / "missing.npy")

    np.save(tmp_path / "three_d.npy", np.zeros(SHAPE, dtype=np.float32))
    with pytest.raises(ConfigError, match=r"shape \(4, 8, 8\); allowed: a 4-D"):
        load_latent_file(tmp_path / "three_d.npy")

    np.save(tmp_path / "ints.npy", np.zeros((1, *SHAPE), dtype=np.int32))
    with pytest.raises(ConfigError, match="dtype int32; allowed: a floating-point"):
        load_latent_file(tmp_path / "ints.npy")

    np.save(tmp_path / "nan.npy", np.full((1, *SHAPE), np.nan, dtype=np.float32))
    with pytest.raises(ConfigError, match="NaN"):
        load_latent_file(tmp_path / "nan.npy")

    torch.save({"latents": torch.zeros(1, *SHAPE)}, tmp_path / "dict.pt")
    with pytest.raises(ConfigError, match="holds dict; allowed: one tensor"):
        load_latent_file(tmp_path / "dict.pt")

    torch.save(torch.zeros(2, 2), tmp_path / "two_d.pt")
    with pytest.raises(ConfigError, match=r"shape \(2, 2\); allowed: a 4-D"):
        load_latent_file(tmp_path / "two_d.pt")

    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="not a readable torch file"):
        load_latent_file(tmp_path / "garbage.pt")


# -- LatentSource: shared --------------------------------------------------------------------------


def test_shared_seeded() -> None:
    source = LatentSource(SHAPE, "shared", seed=5)
    batch = source.for_samples([0, 3, 3, 9])
    assert batch.shape == (4, *SHAPE) and batch.dtype == np.float32 and batch.flags.c_contiguous
    for row in batch:
        np.testing.assert_array_equal(row, seeded_latents((1, *SHAPE), 5)[0])
    assert source.for_samples([]).shape == (0, *SHAPE)
    source.preload(range(10))
    assert source.cached_indices == frozenset()


def test_shared_from_file(tmp_path: Path) -> None:
    latent = seeded_latents((1, *SHAPE), 11)
    np.save(tmp_path / "one.npy", latent)
    source = LatentSource(SHAPE, "shared", file=str(tmp_path / "one.npy"))
    np.testing.assert_array_equal(source.for_samples([4, 2]), np.concatenate([latent, latent]))
    assert source.describe()["file_sha256"]
    assert source.describe()["seed"] is None

    np.save(tmp_path / "two.npy", seeded_latents((2, *SHAPE), 11))
    with pytest.raises(ConfigError, match=r"shape \(2, 4, 8, 8\); shared mode needs \(1, 4, 8, 8\)"):
        LatentSource(SHAPE, "shared", file=str(tmp_path / "two.npy"))


def test_seed_changes_latents() -> None:
    a = LatentSource(SHAPE, "shared", seed=0).for_samples([0])
    b = LatentSource(SHAPE, "shared", seed=1).for_samples([0])
    assert not np.array_equal(a, b)


# -- LatentSource: per-sample ----------------------------------------------------------------------


def test_per_sample_seeded_uses_seed_plus_index() -> None:
    source = LatentSource(SHAPE, "per-sample", seed=100)
    batch = source.for_samples([0, 2, 2])
    np.testing.assert_array_equal(batch[0], seeded_latents((1, *SHAPE), 100)[0])
    np.testing.assert_array_equal(batch[1], seeded_latents((1, *SHAPE), 102)[0])
    np.testing.assert_array_equal(batch[1], batch[2])
    assert not np.array_equal(batch[0], batch[1])


def test_per_sample_preload_and_release() -> None:
    source = LatentSource(SHAPE, "per-sample", seed=0)
    on_demand = source.for_samples([1, 5])
    assert source.cached_indices == frozenset(), "on-demand latents are not kept"
    source.preload([1, 5, 7])
    assert source.cached_indices == {1, 5, 7}
    cached = source._cache[5]
    source.preload([5])
    assert source._cache[5] is cached, "preload does not regenerate a cached latent"
    np.testing.assert_array_equal(source.for_samples([1, 5]), on_demand)
    source.release([5, 42])
    assert source.cached_indices == {1, 7}
    source.release([1, 7])
    assert source.cached_indices == frozenset()


def test_per_sample_from_file(tmp_path: Path) -> None:
    rows = seeded_latents((3, *SHAPE), 9)
    torch.save(torch.from_numpy(rows), tmp_path / "rows.pt")
    source = LatentSource(SHAPE, "per-sample", file=str(tmp_path / "rows.pt"), seed=123)
    np.testing.assert_array_equal(source.for_samples([2, 0]), rows[[2, 0]])
    assert source.for_samples([2, 0]).flags.c_contiguous
    with pytest.raises(ConfigError, match=r"sample index 3 is beyond latent file .*rows\.pt.*3 rows"):
        source.for_samples([3])
    with pytest.raises(ConfigError, match="sample index 5 is beyond"):
        source.preload([5])

    with pytest.raises(ConfigError, match=r"per-sample mode needs \(N, 4, 16, 16\)"):
        LatentSource((4, 16, 16), "per-sample", file=str(tmp_path / "rows.pt"))


def test_source_errors() -> None:
    with pytest.raises(ConfigError, match=r"latent mode 'random' is invalid; allowed: \['shared', 'per-sample'\]"):
        LatentSource(SHAPE, "random")
    with pytest.raises(ConfigError, match="three positive integers"):
        LatentSource((1, 4, 8, 8), "shared")
    with pytest.raises(ConfigError, match="three positive integers"):
        LatentSource((4, 0, 8), "shared")
    with pytest.raises(ConfigError, match="seed"):
        LatentSource(SHAPE, "shared", seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="does not exist"):
        LatentSource(SHAPE, "shared", file="/nonexistent/latents.npy")
    with pytest.raises(ValueError, match="negative"):
        LatentSource(SHAPE, "per-sample").for_samples([-1])


@settings(max_examples=25, deadline=None, database=None)
@given(
    indices=st.lists(st.integers(min_value=0, max_value=40), max_size=6),
    preloaded=st.lists(st.integers(min_value=0, max_value=40), max_size=6),
    mode=st.sampled_from(["shared", "per-sample"]),
)
def test_batch_equals_stacked_singles(indices: list[int], preloaded: list[int], mode: str) -> None:
    source = LatentSource((2, 4, 4), mode, seed=17)
    source.preload(preloaded)
    batch = source.for_samples(indices)
    assert batch.shape == (len(indices), 2, 4, 4) and batch.dtype == np.float32 and batch.flags.c_contiguous
    singles = [source.for_samples([index]) for index in indices]
    expected = np.concatenate(singles) if singles else np.empty((0, 2, 4, 4), dtype=np.float32)
    np.testing.assert_array_equal(batch, expected)
    source.release(preloaded)
    assert source.cached_indices == frozenset()
    np.testing.assert_array_equal(source.for_samples(indices), batch)
