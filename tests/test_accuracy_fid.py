"""FID as MLPerf computes it: the pytorch-fid network from a local file, streaming statistics that
match np.mean / np.cov, and Frechet distances that agree with a plain NumPy / SciPy computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import linalg

from accuracy.errors import AccuracyError
from accuracy.fid import (
    FID_DIMS,
    FeatureStats,
    InceptionFeatures,
    frechet_distance,
    frechet_distance_eigen,
    load_fid_inception,
    load_stats,
    save_stats,
)
from accuracy.standins import StandinFiles, ensure_standin_files, synthetic_images


@pytest.fixture(scope="module")
def standins(harness_cache: Path) -> StandinFiles:
    return ensure_standin_files(harness_cache / "accuracy-standins")


@pytest.fixture(scope="module")
def inception(standins: StandinFiles) -> InceptionFeatures:
    return InceptionFeatures(load_fid_inception(standins.inception_weights))


def _scipy_fid(mu1, s1, mu2, s2) -> float:
    """The textbook formula with SciPy's sqrtm, written out here, independent of the code under test."""
    covmean = linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def _stats(x: np.ndarray, batch: int = 7) -> FeatureStats:
    stats = FeatureStats(x.shape[1])
    for i in range(0, len(x), batch):
        stats.update(x[i : i + batch])
    return stats


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 40), st.integers(1, 9), st.integers(0, 10_000))
def test_streaming_statistics_match_numpy(n: int, batch: int, seed: int) -> None:
    x = np.random.default_rng(seed).normal(3.0, 2.0, size=(n, 16))
    stats = _stats(x, batch)
    assert stats.count == n
    np.testing.assert_allclose(stats.mu, np.mean(x, axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    rows = stats.rows
    assert (rows is not None and np.array_equal(rows, x)) if n <= 16 else rows is None


@pytest.mark.parametrize("n", [200, 12])  # full rank, and fewer samples than dimensions
def test_both_fid_methods_agree_with_plain_scipy(n: int) -> None:
    rng = np.random.default_rng(n)
    d = 32
    ref = rng.normal(size=(300, d)) @ rng.normal(size=(d, d)) * 0.3
    gen = rng.normal(0.2, 1.0, size=(n, d)) @ rng.normal(size=(d, d)) * 0.3
    mu_r, s_r = ref.mean(axis=0), np.cov(ref, rowvar=False)
    stats = _stats(gen)
    expected = _scipy_fid(mu_r, s_r, gen.mean(axis=0), np.cov(gen, rowvar=False))
    assert expected > 1
    tol = 1e-8 if n > d else 1e-5  # sqrtm of a singular product is itself only this accurate
    assert frechet_distance(mu_r, s_r, stats, "pytorch-fid") == pytest.approx(expected, rel=tol)
    assert frechet_distance(mu_r, s_r, stats, "eigen") == pytest.approx(expected, rel=tol)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 60), st.integers(0, 10_000))
@example(25, 3086).via("CI's failure on the 1e-9 bound")
@example(25, 1358).via("the worst case of a scan")
def test_fid_of_a_set_against_its_own_statistics_is_zero(n: int, seed: int) -> None:
    x = np.random.default_rng(seed).gamma(2.0, size=(n, 24))
    stats = _stats(x)
    fid = frechet_distance(stats.mu, stats.sigma, stats, "eigen")
    # tr sqrt(S S) in floating point: an eigenvalue of S S near zero carries an error of about eps * |S|^2,
    # and its square root one of sqrt(eps) * |S|, so near n = d + 1 (S barely full rank) the sum over d
    # eigenvalues is off by up to about d^1.5 * sqrt(eps) * |S| (seen: 7.5e-7 at n=25, seed 1358, 7 sqrt(eps) |S|).
    # Still far below any real distance: a wrong formula is off by O(tr S).
    d = x.shape[1]
    assert abs(fid) < d**1.5 * np.sqrt(np.finfo(np.float64).eps) * np.linalg.norm(stats.sigma, 2)


def test_an_unknown_fid_method_is_refused() -> None:
    stats = _stats(np.random.default_rng(0).normal(size=(5, 4)))
    with pytest.raises(AccuracyError, match="fid_method 'sqrt' is not known; choose one of: pytorch-fid, eigen"):
        frechet_distance(stats.mu, stats.sigma, stats, "sqrt")


def test_features_are_pytorch_fids_on_the_pil_image(inception: InceptionFeatures) -> None:
    """The MLPerf path: PIL image -> torchvision ToTensor -> InceptionV3 (resize 299 bilinear, no antialias)."""
    import torchvision.transforms as TF
    from PIL import Image

    images = synthetic_images(2, 48, seed=3)
    ours = inception(images)
    assert ours.shape == (2, FID_DIMS) and ours.dtype == np.float64
    with torch.no_grad():
        for img, row in zip(images, ours, strict=True):
            x = TF.ToTensor()(Image.fromarray(img).convert("RGB")).unsqueeze(0)
            reference = inception.model(x)[0].squeeze(3).squeeze(2).numpy()[0]
            np.testing.assert_allclose(row, reference, rtol=1e-4, atol=1e-5)
    assert ours.std() > 0.01  # the stand-in network gives features that differ between images


def test_inception_fid_from_real_features_agrees_with_numpy(inception: InceptionFeatures) -> None:
    """2048-d features of real images: tr sqrt(S1 S2) equals the nuclear norm of Xc1 Xc2^T / sqrt((n1-1)(n2-1))."""
    a = inception(synthetic_images(4, 40, seed=10))
    b = inception(synthetic_images(3, 40, seed=11))
    ref, gen = _stats(a), _stats(b)
    ac, bc = a - a.mean(axis=0), b - b.mean(axis=0)
    tr_sqrt = np.linalg.svd(ac @ bc.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(np.cov(a, rowvar=False))
    expected += np.trace(np.cov(b, rowvar=False)) - 2 * tr_sqrt
    assert frechet_distance(ref.mu, ref.sigma, gen, "eigen") == pytest.approx(expected, rel=1e-9)
    # ... and the same set against its own statistics is ~0, a different one is not
    assert abs(frechet_distance(gen.mu, gen.sigma, gen, "eigen")) < 1e-9 * np.trace(gen.sigma)
    assert expected > 1e-3


def test_the_stand_in_weights_load_strictly_through_pytorch_fid(standins: StandinFiles, tmp_path: Path) -> None:
    from pytorch_fid import inception as pf

    state = torch.load(standins.inception_weights, weights_only=True)
    model = load_fid_inception(standins.inception_weights)
    assert isinstance(model, pf.InceptionV3)
    assert any(isinstance(m, pf.FIDInceptionE_2) for m in model.modules())  # the FID variant, not torchvision's
    assert state["fc.weight"].shape == (1008, 2048)  # the TF network's 1008 classes
    # A file with a key missing does not fit, and the error names it.
    del state["Mixed_7c.branch_pool.conv.weight"]
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(AccuracyError, match="do not fit pytorch-fid's FID InceptionV3"):
        load_fid_inception(broken)


def test_statistics_files_round_trip_and_bad_ones_are_clear(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=FID_DIMS), np.eye(FID_DIMS)
    save_stats(tmp_path / "s.npz", mu, sigma)
    got_mu, got_sigma = load_stats(tmp_path / "s.npz")
    assert np.array_equal(got_mu, mu) and np.array_equal(got_sigma, sigma)
    np.savez(tmp_path / "keys.npz", mean=mu, cov=sigma)
    with pytest.raises(AccuracyError, match=r"arrays \['cov', 'mean'\]; expected 'mu' and 'sigma'"):
        load_stats(tmp_path / "keys.npz")
    np.savez(tmp_path / "shape.npz", mu=mu[:10], sigma=sigma)
    with pytest.raises(AccuracyError, match=r"mu \(10,\), sigma \(2048, 2048\); expected \(2048,\)"):
        load_stats(tmp_path / "shape.npz")


def test_eigen_fid_with_full_rank_statistics_uses_the_symmetric_route() -> None:
    rng = np.random.default_rng(5)
    d = 8
    a, b = rng.normal(size=(50, d)), rng.normal(0.5, 2.0, size=(40, d))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = _scipy_fid(a.mean(0), s1, b.mean(0), s2)
    assert frechet_distance_eigen(a.mean(0), s1, b.mean(0), s2) == pytest.approx(expected, rel=1e-9)
