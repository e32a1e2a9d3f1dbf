"""The QSL loads and frees what LoadGen asks for and refuses samples it never loaded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.data.latents import LatentSource
from harness.data.prompts import load_prompts
from harness.data.qsl import QuerySampleLibrary
from harness.errors import ConfigError


def _qsl(mode: str = "per-sample", count: int = 0) -> QuerySampleLibrary:
    return QuerySampleLibrary(load_prompts(""), LatentSource((4, 4, 4), mode, seed=3), count)


@settings(max_examples=50, deadline=None)
@given(
    load=st.sets(st.integers(0, 63), max_size=30),
    unload=st.sets(st.integers(0, 63), max_size=30),
)
def test_load_and_unload_track_resident_samples(load: set[int], unload: set[int]) -> None:
    qsl = _qsl()
    qsl.load_samples(sorted(load))
    qsl.unload_samples(sorted(unload))
    resident = load - unload
    assert qsl.loaded_count == len(resident)
    assert qsl.latents.cached_indices == frozenset(resident)
    if resident:
        idx = sorted(resident)
        batch = qsl.batch(idx)
        assert batch.sample_indices == tuple(idx)
        assert batch.prompts == tuple(qsl.prompts.texts[i] for i in idx)
        assert batch.latents.shape == (len(idx), 4, 4, 4) and batch.latents.dtype == np.float32
    gone = sorted(unload & load)
    if gone:
        with pytest.raises(RuntimeError, match="never loaded"):
            qsl.batch(gone[:1])


def test_shared_latent_is_the_same_for_every_sample() -> None:
    qsl = _qsl("shared")
    qsl.load_samples([0, 5, 9])
    lat = qsl.batch([0, 5, 9]).latents
    assert np.array_equal(lat[0], lat[1]) and np.array_equal(lat[1], lat[2])


def test_per_sample_latents_differ_and_repeat() -> None:
    qsl = _qsl("per-sample")
    qsl.load_samples([1, 2])
    a = qsl.batch([1, 2]).latents
    assert not np.array_equal(a[0], a[1])
    assert np.array_equal(a, qsl.batch([1, 2]).latents)


def test_count_limits_the_samples_and_is_checked() -> None:
    assert _qsl(count=10).total_count == 10
    with pytest.raises(ConfigError, match="dataset.count 65 is out of range"):
        _qsl(count=65)
