"""`python -m tools.fid_stats`: reference statistics from a folder of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from accuracy.errors import AccuracyError
from accuracy.fid import FeatureStats, InceptionFeatures, frechet_distance, load_fid_inception, load_stats
from accuracy.standins import StandinFiles, ensure_standin_files, synthetic_images
from tools.fid_stats import folder_statistics


@pytest.fixture(scope="module")
def standins(harness_cache: Path) -> StandinFiles:
    return ensure_standin_files(harness_cache / "accuracy-standins")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three images of two sizes, plus a file that is not an image."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(synthetic_images(2, 32, seed=1)):
        Image.fromarray(img).save(folder / f"a{i}.png")
    Image.fromarray(synthetic_images(1, 48, seed=2)[0]).save(folder / "b0.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_statistics_equal_those_of_the_images_one_by_one(folder: Path, standins: StandinFiles) -> None:
    mu, sigma, count = folder_statistics(folder, standins.inception_weights, batch_size=2)
    assert count == 3
    features = InceptionFeatures(load_fid_inception(standins.inception_weights))
    rows = np.concatenate([features(np.asarray(Image.open(p))[None]) for p in sorted(folder.glob("*.png"))])
    np.testing.assert_allclose(mu, rows.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(rows, rowvar=False), rtol=1e-4, atol=1e-6)
    # FID of the same images against these statistics is ~0
    stats = FeatureStats()
    stats.update(rows)
    assert abs(frechet_distance(mu, sigma, stats, "eigen")) < 1e-4


def test_the_cli_writes_statistics_that_load_as_fid_stats(
    folder: Path, standins: StandinFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m tools.fid_stats` (its main(), in this process; HARNESS_CACHE_DIR is the session's)."""
    from tools.fid_stats import main

    out = tmp_path / "ref.npz"
    args = [str(folder), str(out), "--inception-weights", "standin"]
    assert main(args) == 0
    assert f"wrote {out}: statistics of 3 images" in capsys.readouterr().out
    mu, sigma = load_stats(out)
    assert mu.shape == (2048,) and np.allclose(sigma, sigma.T)
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"error: output {str(out)!r} exists; pass --force to overwrite it"


def test_too_few_images_is_a_clear_error(tmp_path: Path, standins: StandinFiles) -> None:
    (tmp_path / "one.png").write_bytes(b"")
    with pytest.raises(AccuracyError, match="has 1 images .* statistics need at least 2"):
        folder_statistics(tmp_path, standins.inception_weights)
    with pytest.raises(AccuracyError, match="is not a directory"):
        folder_statistics(tmp_path / "nope", standins.inception_weights)
