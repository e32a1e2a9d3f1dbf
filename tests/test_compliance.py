"""`python -m harness compliance`: TEST01 and TEST04 run and verify on the tiny model; the verification
rules on synthetic logs; the audit config reaches LoadGen without a "Multiple conf files" error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.loadgen.audit_config import AUDIT_CONFIGS, apply_audit_config
from harness.loadgen.module import lg
from harness.mlperf import compliance as verify
from tests.conftest import ROOT

# Short development runs of the tiny model: 8 prompts, batches of 8, half a second.
TINY = [
    "--set",
    "dataset.count=8",
    "--set",
    "loadgen.min_duration_ms=300",
    "--set",
    "loadgen.min_query_count=8",
    "--set",
    "loadgen.offline_expected_qps=8",
    "--set",
    "accuracy.score=false",
]


def _harness(cache: Path, cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HARNESS_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


def _one(runs: Path, suffix: str) -> Path:
    found = sorted(p for p in runs.iterdir() if p.name.endswith(suffix))
    assert len(found) == 1, [p.name for p in runs.iterdir()]
    return found[0]


def _summary_score(path: Path) -> float:
    m = re.search(r"^Samples per second: ([\d.]+)$", path.read_text(), re.M)
    assert m, path
    return float(m.group(1))


@pytest.fixture(scope="module")
def tiny_runs(harness_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """TEST01 (which makes the accuracy and the performance run first), then TEST04 against that
    performance run, with a user.conf as well: the tiny model, eager, on the CPU."""
    work = tmp_path_factory.mktemp("compliance")
    runs = work / "runs"
    common = ["--output-dir", str(runs), "--no-progress", *TINY]
    t01 = _harness(harness_cache, work, "compliance", "--test", "TEST01", *common)
    assert t01.returncode in (0, 1), t01.stderr[-3000:]
    perf = _one(runs, "-Offline-performance")
    conf = work / "user.conf"
    conf.write_text("*.Offline.min_query_count = 8\n")
    t04 = _harness(
        harness_cache,
        work,
        "compliance",
        "--test",
        "TEST04",
        *common,
        "--performance-run",
        str(perf),
        "--user-conf",
        str(conf),
    )
    assert t04.returncode in (0, 1), t04.stderr[-3000:]
    return {"runs": runs, "TEST01": t01, "TEST04": t04, "performance": perf}


def test_test01_runs_and_verifies_on_the_tiny_model(tiny_runs: dict) -> None:
    runs, proc = tiny_runs["runs"], tiny_runs["TEST01"]
    d = _one(runs, "-Offline-TEST01")
    acc = _one(runs, "-Offline-accuracy")
    assert (d / "audit.config").read_text() == AUDIT_CONFIGS["TEST01"]
    detail = (d / "mlperf_log_detail.txt").read_text()
    assert "Found Audit Config file" in detail and "Multiple conf files" not in detail
    assert re.search(r'"key": "effective_accuracy_log_sampling_target", "value": 128\b', detail)
    assert re.search(r'"key": "effective_accuracy_log_rng_seed", "value": 720381539243781796\b', detail)

    # The eager CPU backend is deterministic: every sampled response equals the accuracy run's.
    logged = {e["qsl_idx"]: e["data"] for e in json.loads((d / "mlperf_log_accuracy.json").read_text())}
    reference = {e["qsl_idx"]: e["data"] for e in json.loads((acc / "mlperf_log_accuracy.json").read_text())}
    assert logged and all(reference[i] == data for i, data in logged.items())
    verify_accuracy = (d / "verify_accuracy.txt").read_text().splitlines()
    assert "TEST PASS" in verify_accuracy
    assert f"num_perf_log_qsl_idx_match = {len(logged)}" in verify_accuracy

    # Performance: the verdict follows from the two detail logs' numbers (within 10 %).
    report = json.loads((d / "compliance.json").read_text())
    perf = report["performance"]
    ref, test = perf["reference_score"], perf["test_score"]
    assert ref > 0 and test > 0
    assert perf["passed"] == (0.9 * ref <= test <= 1.1 * ref)
    assert ("TEST PASS" in (d / "verify_performance.txt").read_text().splitlines()) == perf["passed"]
    assert report["accuracy"]["method"] == "bytes" and report["accuracy"]["passed"] is True
    assert report["passed"] == perf["passed"]
    assert proc.returncode == (0 if report["passed"] else 1)
    assert f"TEST01: {'PASS' if report['passed'] else 'FAIL'}" in proc.stdout


def test_test04_runs_and_verifies_on_the_tiny_model(tiny_runs: dict) -> None:
    runs, proc = tiny_runs["runs"], tiny_runs["TEST04"]
    d = _one(runs, "-Offline-TEST04")
    assert (d / "audit.config").read_text() == AUDIT_CONFIGS["TEST04"]
    detail = (d / "mlperf_log_detail.txt").read_text()
    # The audit config applied next to a user.conf: no second conf_type=1 load, no LoadGen error.
    assert "Found Audit Config file" in detail and "Multiple conf files" not in detail
    assert '"key": "effective_performance_issue_same", "value": true' in detail
    assert '"key": "effective_performance_issue_same_index", "value": 3' in detail
    assert json.loads((d / "summary.json").read_text())["loadgen"]["errors"] == []
    # Not more than 10 % faster than the normal run, from the two summary logs.
    ref = _summary_score(tiny_runs["performance"] / "mlperf_log_summary.txt")
    test = _summary_score(d / "mlperf_log_summary.txt")
    passed = test < 1.1 * ref
    lines = (d / "verify_performance.txt").read_text().splitlines()
    assert f"reference score = {ref}" in lines
    assert ("TEST PASS" in lines) == passed
    assert proc.returncode == (0 if passed else 1)
    report = json.loads((d / "compliance.json").read_text())
    assert report["test"] == "TEST04" and report["passed"] == passed
    assert report["performance_run"] == str(tiny_runs["performance"])


def test_a_later_runs_cold_start_counts_from_its_own_start(tiny_runs: dict) -> None:
    """TEST01 makes the accuracy run, the performance run, then the test run in one process: the test
    run's cold time to first image starts with that run, not with the process (issue 22, point 5)."""
    d = _one(tiny_runs["runs"], "-Offline-TEST01")
    summary = json.loads((d / "summary.json").read_text())
    ttfi = summary["time_to_first_image_s"]
    assert ttfi["cold_from"].startswith("start of this run") and "run 3 of this process" in ttfi["cold_from"]
    # Its own preparation, load, warm-up and run bound it; the two earlier runs are not in it.
    assert 0 < ttfi["cold"] <= sum(summary["phases_s"].values()) + 1.0


# Bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--mode", "accuracy"], "--mode accuracy: a compliance test is a performance run"),
        (["--accuracy-run", "x"], "--accuracy-run is for TEST01"),
        (["--performance-run", "/no/such/run"], "--performance-run '/no/such/run' does not exist"),
        (["--set", "run.audit_config=a.config"], "run.audit_config is set by the compliance command"),
        # LoadGen takes one user.conf per process: the TEST run after an in-process normal run would log
        # "Multiple conf files are used" and fail, minutes later.
        (["--user-conf", "user.conf"], "LoadGen accepts one user.conf per process"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    harness_cache: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    proc = _harness(harness_cache, tmp_path, "compliance", "--test", "TEST04", "--backend", "fake", *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]


def test_a_reference_run_of_another_scenario_is_refused(harness_cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(
        json.dumps({"mode": "performance", "scenario": "Server", "model": "tiny", "status": "ok"})
    )
    proc = _harness(harness_cache, tmp_path, "compliance", "--test", "TEST04", "--performance-run", str(run))
    assert proc.returncode == 2
    assert "its scenario is Server, this test's is Offline" in proc.stderr


# The audit config: LoadGen's own lookup skips model-specific keys; the harness applies them ----------
def test_the_audit_config_applies_model_specific_keys(tmp_path: Path) -> None:
    source = tmp_path / "TEST04.config"
    source.write_text(AUDIT_CONFIGS["TEST04"])
    for model, expected in (("stable-diffusion-xl", 500), ("harness-dev", 7)):
        settings = lg.TestSettings()
        settings.scenario = lg.TestScenario.Offline
        settings.min_query_count = 7
        run_dir = tmp_path / model
        run_dir.mkdir()
        apply_audit_config(settings, source, run_dir, model, "Offline")
        assert settings.min_query_count == expected
        assert settings.performance_issue_same and settings.performance_issue_same_index == 3
        assert (run_dir / "audit.config").read_text() == source.read_text()
    with pytest.raises(ConfigError, match="file not found"):
        apply_audit_config(lg.TestSettings(), tmp_path / "none.config", tmp_path, "x", "Offline")


# Verification rules on synthetic logs ------------------------------------------------------------------
def _accuracy_log(path: Path, images: dict[int, np.ndarray]) -> Path:
    entries = [
        f'{{ "seq_id" : {n}, "qsl_idx" : {i}, "data" : "{img.tobytes().hex().upper()}" }}'
        for n, (i, img) in enumerate(images.items())
    ]
    path.write_text("[\n" + ",\n".join(entries) + "\n]\n")
    return path


def _images(indices: list[int], seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i: rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8) for i in indices}


def test_test01_bytes_first_byte_rule(tmp_path: Path) -> None:
    ref_images = _images(list(range(10)))
    ref = _accuracy_log(tmp_path / "ref.json", ref_images)
    same = _accuracy_log(tmp_path / "same.json", {i: ref_images[i] for i in (2, 5, 7)})
    check = verify.compare_accuracy_logs(ref, same, 4, 4)
    assert check.passed and check.lines[-1] == "TEST PASS"
    assert check.numbers["num_perf_log_qsl_idx_match"] == 3 and check.numbers["num_perf_log_data_mismatch"] == 0

    # A difference beyond the first byte: the official rule passes; this tool counts and warns.
    later = {i: ref_images[i].copy() for i in (2, 5)}
    later[5][3, 3, 2] ^= 1
    check = verify.compare_accuracy_logs(ref, _accuracy_log(tmp_path / "later.json", later), 4, 4)
    assert check.passed and check.numbers["num_perf_log_any_byte_mismatch"] == 1
    assert any(line.startswith("WARNING: 1 responses") for line in check.lines)

    first = {i: ref_images[i].copy() for i in (2, 5)}
    first[2][0, 0, 0] ^= 0xFF
    check = verify.compare_accuracy_logs(ref, _accuracy_log(tmp_path / "first.json", first), 4, 4)
    assert not check.passed and check.lines[-1] == "TEST FAIL"
    assert check.numbers["num_perf_log_data_mismatch"] == 1

    missing = _accuracy_log(tmp_path / "missing.json", _images([42], seed=3))
    check = verify.compare_accuracy_logs(ref, missing, 4, 4)
    assert not check.passed and check.numbers["num_missing_qsl_idxs"] == 1

    (tmp_path / "empty.json").write_text("[\n]\n")
    check = verify.compare_accuracy_logs(ref, tmp_path / "empty.json", 4, 4)
    assert not check.passed and check.lines[-1].startswith("TEST FAIL: ") and "no entries" in check.lines[-1]


def _mean_scorer(path: Path) -> dict[str, float]:
    """A stand-in for CLIP/FID: a function of the logged pixels, so changed images change the scores."""
    pixels = np.concatenate(
        [np.frombuffer(bytes.fromhex(e["data"]), dtype=np.uint8) for e in json.loads(path.read_text())]
    ).astype(np.float64)
    return {"CLIP_SCORE": 30 + pixels.mean() / 100, "FID_SCORE": 20 + pixels.std() / 10}


def test_test01_clip_fid_fallback(tmp_path: Path) -> None:
    ref_images = _images(list(range(6)))
    ref = _accuracy_log(tmp_path / "ref.json", ref_images)
    close = {i: ref_images[i].copy() for i in (1, 3)}
    for img in close.values():
        img[0, 0, 0] ^= 1  # first bytes differ: the byte rule fails, the scores barely move
    test = _accuracy_log(tmp_path / "close.json", close)
    out = tmp_path / "run"
    out.mkdir()
    check = verify.clip_fid_fallback(ref, test, [1, 3], out, 4, 4, _mean_scorer)
    assert check.passed and check.numbers["state"] == "scored" and check.numbers["samples"] == 2
    baseline = json.loads((out / "mlperf_log_accuracy_baseline.json").read_text())
    assert [e["qsl_idx"] for e in baseline] == [1, 3]  # only the sampled indices
    expected = _mean_scorer(out / "mlperf_log_accuracy_baseline.json")
    text = (out / "accuracy" / "baseline_accuracy.txt").read_text()
    assert f"'CLIP_SCORE': '{float(expected['CLIP_SCORE'])!r}'" in text and "'FID_SCORE'" in text
    assert (out / "accuracy" / "compliance_accuracy.txt").read_text().startswith("Accuracy Results: {")

    far = {i: np.zeros_like(ref_images[i]) for i in (1, 3)}  # black images: FID moves far
    out2 = tmp_path / "run2"
    out2.mkdir()
    check = verify.clip_fid_fallback(ref, _accuracy_log(tmp_path / "far.json", far), [1, 3], out2, 4, 4, _mean_scorer)
    assert not check.passed and check.lines[-1].startswith("CLIP/FID fallback: FAIL")

    check = verify.clip_fid_fallback(ref, test, [1, 3], out, 4, 4, None, "accuracy.score is false")
    assert not check.passed and check.numbers == {"state": "not scored", "reason": "accuracy.score is false"}


def test_compare_scores_uses_the_checkers_delta() -> None:
    base = {"CLIP_SCORE": 31.7, "FID_SCORE": 23.5}
    assert verify.compare_scores(base, {"CLIP_SCORE": 31.7 * 1.0099, "FID_SCORE": 23.5}).passed
    assert not verify.compare_scores(base, {"CLIP_SCORE": 31.7 * 1.02, "FID_SCORE": 23.5}).passed
    assert verify.compare_scores(base, {"CLIP_SCORE": 31.7, "FID_SCORE": 23.5 * 1.019}).passed
    assert not verify.compare_scores(base, {"CLIP_SCORE": 31.7, "FID_SCORE": 23.5 * 1.03}).passed


def _summary(path: Path, scenario: str, score: float, valid: bool = True) -> Path:
    lines = ["=" * 48, "MLPerf Results Summary", "=" * 48, "SUT name : PySUT", f"Scenario : {scenario}"]
    if scenario == "Offline":
        lines.append(f"Samples per second: {score}")
    elif scenario == "Server":
        lines.append(f"Completed samples per second    : {score}")
    else:
        lines += ["90.0th percentile latency (ns) : 1", f" * Early stopping 90.0th percentile estimate: {score}"]
    lines.append(f"Result is : {'VALID' if valid else 'INVALID'}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "scenario, ref, test, passed",
    [
        ("Offline", 100.0, 109.0, True),
        ("Offline", 100.0, 111.0, False),  # more than 10 % faster: caching
        ("Offline", 100.0, 50.0, True),  # slower is allowed
        ("Server", 10.0, 10.5, True),
        ("Server", 10.0, 11.5, False),
        # SingleStream scores are 1e9 / latency (ns): 1 s -> 1.0; 20 % allowed at such scores
        ("SingleStream", 1.0, 1 / 0.85, True),
        ("SingleStream", 1.0, 1 / 0.8, False),
    ],
)
def test_test04_no_caching_rule(tmp_path: Path, scenario: str, ref: float, test: float, passed: bool) -> None:
    written = {"SingleStream": (1e9 / ref, 1e9 / test)}.get(scenario, (ref, test))  # latencies in ns
    r = _summary(tmp_path / "ref.txt", scenario, written[0])
    t = _summary(tmp_path / "test.txt", scenario, written[1])
    check = verify.compare_no_caching(r, t)
    assert check.passed == passed
    assert check.lines[-1] == ("TEST PASS" if passed else "TEST FAIL: Test score invalid")
    assert check.numbers["reference_score"] == pytest.approx(ref)


def test_test04_refuses_invalid_results(tmp_path: Path) -> None:
    r = _summary(tmp_path / "ref.txt", "Offline", 100.0)
    t = _summary(tmp_path / "test.txt", "Offline", 90.0, valid=False)
    check = verify.compare_no_caching(r, t)
    assert not check.passed and check.lines[-1] == "TEST FAIL: Test results are invalid"
    other = _summary(tmp_path / "server.txt", "Server", 90.0)
    assert verify.compare_no_caching(r, other).lines[-1] == "TEST FAIL: Test and reference scenarios do not match!"


def _detail(path: Path, values: dict[str, object]) -> Path:
    lines = [f":::MLLOG {json.dumps({'key': k, 'value': v, 'metadata': {}})}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("test_score, passed", [(91.0, True), (109.0, True), (89.0, False), (111.0, False)])
def test_test01_performance_within_10_percent(tmp_path: Path, test_score: float, passed: bool) -> None:
    base = {"effective_scenario": "Offline", "result_validity": "VALID"}
    r = _detail(tmp_path / "ref.txt", {**base, "result_samples_per_second": 100.0})
    t = _detail(tmp_path / "test.txt", {**base, "result_samples_per_second": test_score})
    check = verify.compare_performance_detail(r, t)
    assert check.passed == passed
    assert ("TEST PASS" in check.lines) == passed
    invalid = _detail(tmp_path / "bad.txt", {**base, "result_validity": "INVALID"})
    assert verify.compare_performance_detail(r, invalid).lines[-1].startswith("TEST FAIL: Invalid results in")


@pytest.mark.slow  # two scored accuracy runs of the tiny model
def test_the_clip_fid_fallback_says_why_it_cannot_score(tmp_path: Path) -> None:
    """A model with no accuracy window, no reference run and no scorer files: the fallback gets the
    reason instead of a scorer (it used to reach for the plan's missing scorer files and crash)."""
    pytest.importorskip("open_clip", reason="needs the accuracy extra")
    from harness.commands.compliance import _scorer
    from harness.config import resolve_config

    missing = tmp_path / "no-such-clip.pt"
    cfg = resolve_config(model="tiny", sets=[f"accuracy.clip_weights={missing}"])
    score, reason = _scorer(cfg)
    assert score is None
    assert str(missing) in reason and "no accuracy window" in reason


def _log_entries(path: Path, entries: list[tuple[int, np.ndarray]]) -> Path:
    """An accuracy log that may log a sample more than once (LoadGen's TEST01 sampling can)."""
    lines = [
        f'{{ "seq_id" : {n}, "qsl_idx" : {i}, "data" : "{img.tobytes().hex().upper()}" }}'
        for n, (i, img) in enumerate(entries)
    ]
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    return path


def test_test01_counts_logged_entries_as_the_official_script_does(tmp_path: Path) -> None:
    """verify_accuracy.py counts every entry of the performance log, duplicates included (126 entries of
    124 samples: 126 matches), and an unknown sample logged twice is missing once, then a match."""
    ref_images = _images(list(range(10)))
    ref = _log_entries(tmp_path / "ref.json", list(ref_images.items()))
    other = _images([42], seed=3)[42]
    test = _log_entries(
        tmp_path / "test.json", [(2, ref_images[2]), (5, ref_images[5]), (5, ref_images[5]), (42, other), (42, other)]
    )
    check = verify.compare_accuracy_logs(ref, test, 4, 4)
    n = check.numbers
    assert n["num_perf_log_entries"] == 5 and n["num_perf_log_unique_qsl_idxs"] == 3
    assert n["num_perf_log_qsl_idx_match"] == 4 and n["num_missing_qsl_idxs"] == 1
    assert "num_perf_log_qsl_idx_match = 4" in check.lines and "num_missing_qsl_idxs = 1" in check.lines
    assert check.passed  # no first-byte mismatch, and matches > 0: the official verdict


def _singlestream_summary(path: Path, p90_ns: float, p99_ns: float) -> Path:
    """A SingleStream summary as LoadGen writes it: both early-stopping estimates."""
    lines = [
        "SUT name : PySUT",
        "Scenario : SingleStream",
        "Result is : VALID",
        "Early Stopping Result:",
        f" * Early stopping 90th percentile estimate: {p90_ns:.0f}",
        f" * Early stopping 99th percentile estimate: {p99_ns:.0f}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_test04_singlestream_reads_the_90th_percentile_as_the_official_script(tmp_path: Path) -> None:
    """compliance/TEST04/verify_performance.py scores SingleStream by the 90th-percentile estimate. Here
    the TEST04 run is 31 % faster at the 90th percentile (caching) and equal at the 99th."""
    ref = _singlestream_summary(tmp_path / "ref.txt", 1.0e9, 1.5e9)
    test = _singlestream_summary(tmp_path / "test.txt", 0.69e9, 1.5e9)
    check = verify.compare_no_caching(ref, test)
    assert check.numbers["reference_score"] == pytest.approx(1.0)
    assert check.numbers["test_score"] == pytest.approx(1 / 0.69)
    assert not check.passed and check.lines[-1] == "TEST FAIL: Test score invalid"


def test_a_loadgen_error_in_the_test_run_makes_the_verdict_file_fail(tmp_path: Path) -> None:
    """Scores within the rule, but the TEST04 run's LoadGen logged an error: verify_performance.txt must
    not say TEST PASS anywhere (the checker looks for that text on any line)."""
    from harness.commands.compliance import _verify_test04
    from harness.config import resolve_config

    perf, run = tmp_path / "perf", tmp_path / "test"
    for d in (perf, run):
        d.mkdir()
        _summary(d / "mlperf_log_summary.txt", "Offline", 100.0)
    meta = {"is_error": False}
    lines = [
        {"key": "audit_found", "value": "Found Audit Config file (audit.config)", "metadata": meta},
        {"key": "effective_performance_issue_same", "value": True, "metadata": meta},
        {"key": "error_invalid_config", "value": "Multiple conf files are used.", "metadata": {"is_error": True}},
    ]
    (run / "mlperf_log_detail.txt").write_text("\n".join(f":::MLLOG {json.dumps(e)}" for e in lines) + "\n")
    report = _verify_test04(resolve_config("tiny"), run, perf)
    text = (run / "verify_performance.txt").read_text()
    assert "TEST PASS" not in text
    assert "TEST FAIL: LoadGen logged 'Multiple conf files are used'" in text
    assert report["passed"] is False and report["performance"]["passed"] is False
