"""Quality beyond the accuracy gate (issue 6): CLIP score per prompt category and LPIPS diversity.

The LPIPS tests use the seeded stand-in AlexNet trunk (accuracy/standins.py) with the lpips package's
own calibrated linear layers; the end-to-end test runs `python -m harness --mode accuracy` on the tiny
model with a two-category prompt pack and 2 prompts x 3 seeds of diversity images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from accuracy.errors import MissingAssetError
from accuracy.lpips_diversity import LpipsDiversity, alexnet_trunk_keys, load_lpips
from accuracy.scorer import clip_by_category
from accuracy.standins import ensure_standin_alexnet, synthetic_images
from harness.config import resolve_config
from harness.data.prompts import load_prompt_pack
from harness.errors import ConfigError
from harness.run.quality_step import diversity_indices, prepare
from tests.conftest import run_main

PACK = """\
name = "two-categories"
[[prompts]]
text = "a red cat on a sofa"
category = "cats"
[[prompts]]
text = "a brown dog in a park"
category = "dogs"
[[prompts]]
text = "a black cat in the snow"
category = "cats"
[[prompts]]
text = "a white dog on a beach"
category = "dogs"
"""


@pytest.fixture(scope="module")
def alexnet(harness_cache: Path) -> Path:
    return ensure_standin_alexnet(harness_cache / "accuracy-standins")


@pytest.fixture(scope="module")
def metric(alexnet: Path) -> LpipsDiversity:
    return LpipsDiversity.from_file(alexnet, batch_size=2)


# -- CLIP per category ------------------------------------------------------------------------------


def test_by_category_means_equal_a_plain_numpy_grouping() -> None:
    rng = np.random.default_rng(0)
    categories = [str(c) for c in rng.choice(["portrait", "product", "stylized-art"], size=40)]
    indices = rng.permutation(40)  # the accuracy log's order is LoadGen's, not qsl_idx order
    scores = rng.normal(30.0, 2.0, size=40)
    got = clip_by_category(indices.tolist(), scores.tolist(), categories)

    cats = np.asarray(categories)[indices]
    for cat in np.unique(cats):
        assert got[cat]["count"] == int((cats == cat).sum())
        assert got[cat]["clip_score"] == pytest.approx(float(scores[cats == cat].mean()), rel=1e-12)
    assert list(got) == list(dict.fromkeys(categories))  # categories in qsl_idx order of first sample


def test_rescoring_reads_the_categories_of_each_captions_file(tmp_path: Path) -> None:
    from accuracy.captions import read_prompts

    pack = tmp_path / "pack.toml"
    pack.write_text(PACK + '[[prompts]]\ntext = "a bird"\n')
    tsv = tmp_path / "captions_source.tsv"
    tsv.write_text('id\tcaption\n1\ta "quoted" cat\n2\ta dog\n')
    txt = tmp_path / "captions.txt"
    txt.write_text("a cat\na dog\n")
    assert read_prompts(pack)[1] == ["cats", "dogs", "cats", "dogs", "uncategorized"]
    assert read_prompts(tsv) == (['a "quoted" cat', "a dog"], ["coco", "coco"])
    assert read_prompts(txt)[1] == ["uncategorized", "uncategorized"]


# -- LPIPS ------------------------------------------------------------------------------------------


def test_identical_images_are_at_distance_zero(metric: LpipsDiversity) -> None:
    image = synthetic_images(1, 64, seed=3)
    result = metric.mean_pairwise(np.repeat(image, 3, axis=0))
    # Zero up to float rounding: the batch of 2 and the batch of 1 convolve in different orders.
    assert result.pairs == 3 and result.mean == pytest.approx(0.0, abs=1e-9)
    assert metric.distances(image, image)[0] == 0.0  # the same forward pass on both sides: exactly 0


def test_mean_pairwise_equals_a_direct_pairwise_computation(metric: LpipsDiversity) -> None:
    images = synthetic_images(4, 64, seed=5)
    result = metric.mean_pairwise(images)

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        direct = [float(metric.model(x[i : i + 1], x[j : j + 1])) for i in range(4) for j in range(i + 1, 4)]
    assert result.pairs == len(direct) == 6
    assert result.mean == pytest.approx(float(np.mean(direct)), rel=1e-5)
    assert result.mean > 0


def test_the_trunk_comes_from_the_file_and_nothing_is_downloaded(
    alexnet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("LPIPS tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    model = load_lpips(alexnet)
    state = torch.load(alexnet, map_location="cpu", weights_only=True)
    assert set(alexnet_trunk_keys()) <= set(state)
    assert torch.equal(model.net.slice1.get_submodule("0").weight, state["features.0.weight"])
    assert torch.equal(model.net.slice5.get_submodule("10").bias, state["features.10.bias"])


def test_a_missing_weights_file_names_it_and_the_fetch_command(tmp_path: Path) -> None:
    missing = tmp_path / "alexnet-owt-7be5be79.pth"
    with pytest.raises(MissingAssetError) as err:
        LpipsDiversity.from_file(missing)
    message = str(err.value)
    assert str(missing) in message and "python -m tools.fetch_assets --only alexnet" in message
    assert "\n" not in message


# -- the diversity step ------------------------------------------------------------------------------


def test_diversity_prompts_take_the_first_of_each_category_first() -> None:
    cats = ["a", "a", "b", "a", "c", "b"]
    assert diversity_indices(cats, count=6, limit=4) == [0, 2, 4, 1]
    assert diversity_indices(cats, count=3, limit=10) == [0, 2, 1]


def test_accuracy_mode_refuses_lpips_with_random_weights_and_a_single_seed(tmp_path: Path) -> None:
    pack = tmp_path / "pack.toml"
    pack.write_text(PACK)
    prompts = load_prompt_pack(pack)
    base = ["run.mode=accuracy", "quality.lpips_weights=standin"]
    random = resolve_config("tiny", sets=[*base, "quality.diversity_seeds=3", "model.weights=random"])
    with pytest.raises(ConfigError, match="model.weights is 'random'"):
        prepare(random, prompts, 4, (4, 16, 16), 8)
    single = resolve_config("tiny", sets=[*base, "quality.diversity_seeds=1"])
    with pytest.raises(ConfigError, match="at least 2"):
        prepare(single, prompts, 4, (4, 16, 16), 8)
    off = resolve_config("tiny", sets=["quality.diversity_seeds=3"])  # performance mode: no diversity step
    assert prepare(off, prompts, 4, (4, 16, 16), 8) is None


QUICK = ["--set", "loadgen.min_duration_ms=200", "--set", "loadgen.min_query_count=4", "--set", "dataset.count=4"]


@pytest.fixture
def harness(harness_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`python -m harness ARGS` through the CLI's main() in this process (as tests/test_accuracy_harness.py);
    logging and torch threads are put back afterwards. Returns (exit code, stderr, run dir or None)."""

    def _run(*args: str) -> tuple[int, str, Path | None]:
        capsys.readouterr()
        code, run_dir = run_main(*args, out=tmp_path / f"runs{len(list(tmp_path.glob('runs*')))}")
        return code, capsys.readouterr().err, run_dir

    return _run


def test_tiny_accuracy_run_scores_categories_and_lpips_diversity(harness, tmp_path: Path) -> None:
    pack = tmp_path / "pack.toml"
    pack.write_text(PACK)
    diversity = ["--set", "quality.diversity_seeds=3", "--set", "quality.diversity_prompts=2"]
    code, err, run_dir = harness("--mode", "accuracy", *QUICK, "--set", f"dataset.path={pack}", *diversity)
    assert code == 0, err[-3000:]
    assert run_dir is not None

    # 1. accuracy.json: per-image CLIP scores in qsl_idx order, their means per category of the pack.
    report = json.loads((run_dir / "accuracy.json").read_text())
    assert report["qsl_indices"] == [0, 1, 2, 3]
    scores = np.asarray(report["clip_scores"])
    assert float(scores.mean()) == pytest.approx(report["CLIP_SCORE"], rel=1e-12)
    cats = np.asarray(["cats", "dogs", "cats", "dogs"])
    assert list(report["by_category"]) == ["cats", "dogs"]
    for cat in ("cats", "dogs"):
        assert report["by_category"][cat]["count"] == 2
        assert report["by_category"][cat]["clip_score"] == pytest.approx(float(scores[cats == cat].mean()), rel=1e-12)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["accuracy"]["by_category"] == report["by_category"]
    assert "clip_scores" not in summary["accuracy"]

    # 2. LPIPS diversity: 2 prompts (the first of each category) x 3 seeds, PNGs and quality.json.
    quality = json.loads((run_dir / "quality.json").read_text())
    assert summary["quality"] == quality
    lp = quality["lpips_diversity"]
    assert lp["seeds"] == 3 and lp["net"] == "alex" and lp["standin"] is True
    assert [p["prompt"] for p in lp["per_prompt"]] == ["a red cat on a sofa", "a brown dog in a park"]
    assert [p["category"] for p in lp["per_prompt"]] == ["cats", "dogs"]
    assert all(p["pairs"] == 3 and p["mean"] > 0 for p in lp["per_prompt"])
    assert lp["mean"] == pytest.approx(np.mean([p["mean"] for p in lp["per_prompt"]]))
    assert lp["mean"] > 0
    assert lp["by_category"] == {p["category"]: p["mean"] for p in lp["per_prompt"]}  # one prompt each
    pngs = sorted(p.name for p in (run_dir / "images" / "diversity").glob("*.png"))
    assert len(pngs) == 6 and all((run_dir / f).is_file() for p in lp["per_prompt"] for f in p["images"])
    assert "diversity images" in summary["phases_s"] and "quality" in summary["phases_s"]

    # 3. Rescoring the log with `python -m accuracy` (the pack from the run's config.toml): same by_category.
    from accuracy.__main__ import main as rescore

    out = tmp_path / "rescored"
    assert rescore(["--log", str(run_dir / "mlperf_log_accuracy.json"), "--out", str(out)]) == 0
    assert json.loads((out / "accuracy.json").read_text())["by_category"] == report["by_category"]


def test_a_missing_lpips_file_stops_the_run_before_generating(harness, tmp_path: Path) -> None:
    missing = tmp_path / "alexnet-owt-7be5be79.pth"
    sets = ["--set", "quality.diversity_seeds=3", "--set", f"quality.lpips_weights={missing}"]
    code, err, run_dir = harness("--mode", "accuracy", "--backend", "fake", *QUICK, *sets)
    assert code == 2, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and str(missing) in errors[0]
    assert "python -m tools.fetch_assets --only alexnet" in errors[0]
    assert run_dir is None
