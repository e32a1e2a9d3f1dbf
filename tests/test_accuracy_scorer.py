"""Scoring a whole accuracy log: the MLPerf files, agreement with a plain computation on the same
features, FID(x, x) ~ 0, windows and reference runs, compliance images, and `python -m accuracy`."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from accuracy.clip_score import ClipScorer
from accuracy.errors import AccuracyError, MissingAssetError
from accuracy.fid import FeatureStats, InceptionFeatures, frechet_distance, load_fid_inception, load_stats, save_stats
from accuracy.log_reader import LogStats, write_accuracy_log
from accuracy.scorer import ReferenceRun, ScorerSpec, Scores, Thresholds, evaluate, write_report
from accuracy.standins import STANDIN_NOTE, StandinFiles, ensure_standin_files, synthetic_images
from accuracy.thresholds import absolute_windows

ROOT = Path(__file__).resolve().parent.parent
SIZE = 32
CAPTIONS = [
    "A city at night with people walking around.",
    "The large clock was prominently displaying the time.",
    "A woman is picking bananas from a basket.",
    "A man riding on the back of a motorcycle with a woman.",
]
ORDER = [2, 0, 3, 1]  # LoadGen logs samples in its own order


@pytest.fixture(scope="module")
def standins(harness_cache: Path) -> StandinFiles:
    return ensure_standin_files(harness_cache / "accuracy-standins")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return synthetic_images(len(CAPTIONS), SIZE, seed=21)


def _spec(standins: StandinFiles, **kw: object) -> ScorerSpec:
    fields = {
        "height": SIZE,
        "width": SIZE,
        "clip_weights": standins.clip_weights,
        "inception_weights": standins.inception_weights,
        "fid_stats": standins.fid_stats,
        "standin": True,
        "fid_method": "eigen",
        "batch_size": 4,
        **kw,
    }
    return ScorerSpec(**fields)  # type: ignore[arg-type]


def _log(folder: Path, images: np.ndarray, order: list[int] = ORDER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mlperf_log_accuracy.json"
    write_accuracy_log(path, [(i, images[i]) for i in order])
    return path


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, standins: StandinFiles, images: np.ndarray) -> Path:
    """One scored run directory: the log holds every sample once plus a duplicate of sample 2."""
    run = tmp_path_factory.mktemp("run")
    log = _log(run, images, ORDER + [2])
    evaluate(log, CAPTIONS, _spec(standins), run, Thresholds(), expected_count=4, compliance_ids=[1, 3, 99])
    return run


def test_accuracy_txt_is_what_the_submission_checker_reads(scored: Path) -> None:
    lines = (scored / "accuracy.txt").read_text().splitlines()
    assert lines[0].startswith("Accuracy Results: {'FID_SCORE': '")
    results = ast.literal_eval(lines[0].removeprefix("Accuracy Results: "))
    report = json.loads((scored / "accuracy.json").read_text())
    # the printed digits are the computed float's (repr round-trips)
    assert float(results["FID_SCORE"]) == report["FID_SCORE"] and float(results["CLIP_SCORE"]) == report["CLIP_SCORE"]
    log_hash = hashlib.sha256((scored / "mlperf_log_accuracy.json").read_bytes()).hexdigest()
    assert f"hash={log_hash}" in lines
    assert f"# {STANDIN_NOTE}" in lines  # a stand-in score says so
    assert report["count"] == 4 and report["log"]["entries"] == 5 and report["log"]["duplicates"] == 1
    assert report["verdict"] == "UNCHECKED" and report["standin"] is True
    assert report["scorer"]["image_shape"] == [SIZE, SIZE, 3] and report["scorer"]["fid_method"] == "eigen"


@pytest.fixture(scope="module")
def features(standins: StandinFiles, images: np.ndarray) -> np.ndarray:
    return InceptionFeatures(load_fid_inception(standins.inception_weights))(images)


@pytest.fixture(scope="module")
def own_stats(tmp_path_factory: pytest.TempPathFactory, features: np.ndarray) -> Path:
    """FID statistics of the images themselves."""
    path = tmp_path_factory.mktemp("stats") / "own.npz"
    save_stats(path, features.mean(axis=0), np.cov(features, rowvar=False))
    return path


def test_scores_agree_with_a_plain_computation_on_the_same_features(
    scored: Path, standins: StandinFiles, images: np.ndarray, features: np.ndarray
) -> None:
    report = json.loads((scored / "accuracy.json").read_text())
    per_image = ClipScorer.from_file(standins.clip_weights).scores(images, CAPTIONS)
    assert report["CLIP_SCORE"] == pytest.approx(float(np.mean(per_image)), abs=1e-4)
    mu_ref, sigma_ref = load_stats(standins.fid_stats)
    # tr sqrt(S_ref S_gen) written out with NumPy: S_gen = Xc^T Xc / (n - 1), so its non-zero
    # eigenvalues are those of Xc S_ref Xc^T / (n - 1).
    xc = features - features.mean(axis=0)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(xc @ sigma_ref @ xc.T / (len(xc) - 1)), 0, None)).sum()
    expected = np.sum((mu_ref - features.mean(axis=0)) ** 2) + np.trace(sigma_ref)
    expected += np.trace(np.cov(features, rowvar=False)) - 2 * tr_sqrt
    assert report["FID_SCORE"] == pytest.approx(expected, rel=1e-6)


def test_compliance_images_and_captions(scored: Path, images: np.ndarray) -> None:
    folder = scored / "images"
    for i in (1, 3):
        assert np.array_equal(np.asarray(Image.open(folder / f"{i}.png")), images[i])
    assert (folder / "captions.txt").read_text().splitlines() == [f"1  {CAPTIONS[1]}", f"3  {CAPTIONS[3]}"]
    report = json.loads((scored / "accuracy.json").read_text())
    assert report["compliance_images"]["missing"] == [99]


def test_fid_against_the_sets_own_statistics_is_zero_and_one_swapped_image_changes_it(
    tmp_path: Path, standins: StandinFiles, images: np.ndarray, own_stats: Path, features: np.ndarray
) -> None:
    spec = _spec(standins, fid_stats=own_stats)
    same = evaluate(_log(tmp_path, images), CAPTIONS, spec, tmp_path, Thresholds())
    assert abs(same["FID_SCORE"]) < 1e-6
    assert same["scorer"]["fid_stats"]["sha256"] == hashlib.sha256(own_stats.read_bytes()).hexdigest()
    # one image swapped: the same statistics, features of the other image in its place
    other = InceptionFeatures(load_fid_inception(standins.inception_weights))(synthetic_images(1, SIZE, seed=777))
    swapped = FeatureStats()
    swapped.update(np.concatenate([features[:2], other, features[3:]]))
    mu, sigma = load_stats(own_stats)
    assert frechet_distance(mu, sigma, swapped, "eigen") > 1e-3


def test_windows_and_reference_runs_give_the_verdict(scored: Path, tmp_path: Path, standins: StandinFiles) -> None:
    ref = ReferenceRun.load(scored)
    clip, fid = ref.scores["CLIP_SCORE"], ref.scores["FID_SCORE"]
    report = json.loads((scored / "accuracy.json").read_text())
    scores = Scores(clip, fid, 4, scored / "mlperf_log_accuracy.json", LogStats(sha256=report["log"]["sha256"]))
    identity = report["scorer"]

    def verdict(thresholds: Thresholds, expected: int | None = 4) -> dict:
        return write_report(scores, identity, thresholds, tmp_path, expected)

    same = verdict(Thresholds(reference=ref))  # the same scores against their own run: PASS
    assert same["verdict"] == "PASS" and [c["passed"] for c in same["checks"]] == [True, True]
    assert json.loads((tmp_path / "accuracy.json").read_text())["verdict"] == "PASS"
    failed = verdict(Thresholds(absolute=absolute_windows(clip - 1, clip + 1, fid + 1, fid + 2)))
    assert failed["verdict"] == "FAIL" and len(failed["reasons"]) == 1
    assert failed["reasons"][0].startswith(f"FID_SCORE {fid:.8f} is outside {fid + 1:.8f} <= FID_SCORE")
    drifted = Scores(clip * 1.02, fid, 4, scores.log_path, scores.log)  # CLIP 2 % off, tolerance 1 %
    out = write_report(drifted, identity, Thresholds(reference=ref), tmp_path, 4)
    assert out["verdict"] == "FAIL" and out["reasons"][0].startswith("CLIP_SCORE")
    assert verdict(Thresholds(), expected=5)["reasons"] == ["scored 4 unique samples, expected 5"]
    assert verdict(Thresholds(), expected=None)["verdict"] == "UNCHECKED"
    with pytest.raises(AccuracyError, match="scored 4 samples, this run has 5"):
        ref.check_comparable(_spec(standins).identity(), expected_count=5)
    with pytest.raises(AccuracyError, match="CLIP_SCORE window 2 .. 1 is empty"):
        absolute_windows(2, 1, 0, 0)


def test_a_reference_scored_with_other_files_is_refused(scored: Path, tmp_path: Path, standins: StandinFiles) -> None:
    save_stats(tmp_path / "other.npz", np.zeros(2048), np.eye(2048))
    spec = _spec(standins, fid_stats=tmp_path / "other.npz")
    with pytest.raises(AccuracyError, match="was scored with other FID statistics .* use the same accuracy.fid_stats"):
        ReferenceRun.load(scored).check_comparable(spec.identity(), expected_count=4)
    with pytest.raises(AccuracyError, match="has no accuracy.json"):
        ReferenceRun.load(tmp_path)


def test_missing_scorer_files_name_the_file_and_the_fetch_command(tmp_path: Path, standins: StandinFiles) -> None:
    spec = _spec(standins, inception_weights=tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    with pytest.raises(MissingAssetError) as info:
        spec.check()
    message = str(info.value)
    assert "pt_inception-2015-12-05-6726825d.pth' not found (accuracy.inception_weights)" in message
    assert "python -m tools.fetch_assets --only inception" in message


def test_the_cli_rescores_a_log_and_exits_3_on_fail(
    scored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m accuracy` (its main(), in this process; the harness test runs it as a subprocess)."""
    from accuracy.__main__ import main

    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(CAPTIONS) + "\n")
    base = ["--log", str(scored / "mlperf_log_accuracy.json"), "--height", str(SIZE), "--width", str(SIZE)]
    base += ["--captions", str(captions), "--fid-method", "eigen", "--batch-size", "4"]
    base += ["--clip-weights", "standin", "--inception-weights", "standin", "--fid-stats", "standin"]
    out = tmp_path / "out"
    assert main([*base, "--out", str(out), "--fid-window", "0", "1", "--compliance-ids", ""]) == 3
    stdout = capsys.readouterr().out
    assert stdout.startswith("accuracy: FAIL, CLIP_SCORE") and "FAIL: FID_SCORE" in stdout
    rescored = json.loads((out / "accuracy.json").read_text())
    original = json.loads((scored / "accuracy.json").read_text())
    assert rescored["CLIP_SCORE"] == pytest.approx(original["CLIP_SCORE"], abs=1e-9)
    assert rescored["FID_SCORE"] == pytest.approx(original["FID_SCORE"], rel=1e-9)
    assert (out / "accuracy.txt").read_text().splitlines()[-1] == (scored / "accuracy.txt").read_text().splitlines()[-1]
    assert main([*base, "--out", str(out), "--clip-weights", str(tmp_path / "ViT-B-32.pt")]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "ViT-B-32.pt' not found" in errors[0] and "--only clip" in errors[0]
    # this command's own flag, not the harness's config key
    assert "(--clip-weights)" in errors[0] and "pass --clip-weights PATH" in errors[0]
    assert "accuracy.clip_weights" not in errors[0]


def test_accuracy_json_reports_the_clip_weights_precision(scored: Path) -> None:
    scorer = json.loads((scored / "accuracy.json").read_text())["scorer"]
    assert "float16 precision" in scorer["clip_model"] and "QuickGELU" in scorer["clip_model"]
    precision = scorer["clip_precision"]
    assert precision["rounded_to_float16"] == 0  # the stand-in has OpenAI's float16 layout
    assert set(precision["file_dtypes"]) == {"float16", "float32"} and all(precision["file_dtypes"].values())


def test_accuracy_imports_no_harness_backend_or_loadgen() -> None:
    """accuracy/ is metrics only: the harness calls in, never the other way round."""
    forbidden = {"harness", "backends", "mlperf_loadgen", "diffusers", "transformers"}
    for path in sorted((ROOT / "accuracy").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


def test_the_module_entry_point_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    missing = tmp_path / "mlperf_log_accuracy.json"
    proc = subprocess.run(
        [sys.executable, "-m", "accuracy", "--log", str(missing)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: accuracy log {str(missing)!r} not found"
