"""`python -m harness submission`: the v6.0 tree from the tiny model's runs (fake backend, development
settings), which the checker must reject for exactly what those settings break; and its bad input."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.mlperf import rules
from harness.mlperf.submission import truncate_accuracy_log
from tests.conftest import ROOT

V60 = rules.ROUNDS["v6.0"]
# Development overrides: a short Offline run of 40 samples, made for round v6.0 (its seeds, with no seed
# flags), so only duration and counts depart from the rules.
DEV = [
    "--backend",
    "fake",
    "--set",
    "backend.per_image_latency_ms=10",
    "--set",
    "loadgen.min_duration_ms=300",
    "--set",
    "loadgen.min_query_count=40",
    "--set",
    "loadgen.offline_expected_qps=100",
    "--set",
    "accuracy.score=false",
    "--set",
    "mlperf.round=v6.0",
]
# What the checker needs and systems/<system>.json cannot read from the machine.
SYSTEM_INFO = """
[system]
status = "available"
system_type = "edge"
host_storage_type = "NVMe SSD"
host_memory_configuration = "2x 16GB"
host_networking = "N/A"
host_network_card_count = "1"
host_networking_topology = "N/A"
accelerator_host_interconnect = "N/A"
accelerator_memory_configuration = "N/A"
accelerator_interconnect = "N/A"
cooling = "air"
"""


def _harness(cache: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HARNESS_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=240, env=env, cwd=cwd
    )


@pytest.fixture(scope="module")
def dev_runs(harness_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TEST01 (with its accuracy and performance runs) and TEST04, tiny model, fake backend."""
    work = tmp_path_factory.mktemp("submission")
    runs = work / "runs"
    common = ["--output-dir", str(runs), "--no-progress", *DEV]
    t01 = _harness(harness_cache, work, "compliance", "--test", "TEST01", *common)
    assert t01.returncode in (0, 1), t01.stderr[-3000:]
    found = {p.name.rsplit("-", 1)[-1]: p for p in sorted(runs.iterdir()) if p.is_dir()}
    t04 = _harness(
        harness_cache, work, "compliance", "--test", "TEST04", *common, "--performance-run", str(found["performance"])
    )
    assert t04.returncode in (0, 1), t04.stderr[-3000:]
    found = {p.name.rsplit("-", 1)[-1]: p for p in sorted(runs.iterdir()) if p.is_dir()}
    assert sorted(found) == ["TEST01", "TEST04", "accuracy", "performance"]
    info = work / "system.toml"
    info.write_text(SYSTEM_INFO)
    return {"work": work, "info": info, **found}


def _submit(cache: Path, dev_runs: dict[str, Path], out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    dirs = [str(dev_runs[k]) for k in ("performance", "accuracy", "TEST01", "TEST04")]
    args = ["submission", "--org", "DevOrg", "--system", "cpu_dev", "--division", "closed", "--output", str(out)]
    return _harness(cache, dev_runs["work"], *args, *extra, *dirs)


def _failures(stdout: str) -> set[tuple[str, str]]:
    """(rule, file) of each FAIL line."""
    return {(m.group(1), m.group(2)) for m in re.finditer(r"^FAIL \[([\w-]+)\] (\S+): ", stdout, re.M)}


def test_the_tiny_models_tree_fails_exactly_the_development_overrides(
    harness_cache: Path, dev_runs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "submission"
    proc = _submit(harness_cache, dev_runs, out, "--system-info", str(dev_runs["info"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    org = out / "closed" / "DevOrg"
    res = org / "results" / "cpu_dev" / "stable-diffusion-xl" / "Offline"

    # The v6.0 layout.
    for rel in (
        "performance/run_1/mlperf_log_summary.txt",
        "performance/run_1/mlperf_log_detail.txt",
        "accuracy/mlperf_log_summary.txt",
        "accuracy/mlperf_log_detail.txt",
        "accuracy/accuracy.txt",
        "accuracy/mlperf_log_accuracy.json",
        "TEST01/verify_accuracy.txt",
        "TEST01/verify_performance.txt",
        "TEST01/performance/run_1/mlperf_log_detail.txt",
        "TEST01/accuracy/mlperf_log_accuracy.json",
        "TEST04/verify_performance.txt",
        "TEST04/performance/run_1/mlperf_log_summary.txt",
        "measurements.json",
        "user.conf",
        "README.md",
    ):
        assert (res / rel).is_file(), rel
    assert (org / "systems" / "cpu_dev.json").is_file() and (org / "src" / "README.md").is_file()
    # The accuracy log: truncated to head and tail, and the full log's hash in accuracy.txt.
    full = dev_runs["accuracy"] / "mlperf_log_accuracy.json"
    assert full.stat().st_size > rules.MAX_ACCURACY_LOG_BYTES
    kept = (res / "accuracy" / "mlperf_log_accuracy.json").read_bytes()
    assert len(kept) <= rules.MAX_ACCURACY_LOG_BYTES and full.read_bytes().startswith(kept[:4096])
    assert full.read_bytes().endswith(kept[-4096:])
    digest = hashlib.sha256(full.read_bytes()).hexdigest()
    assert f"hash={digest}" in (res / "accuracy" / "accuracy.txt").read_text().splitlines()
    user_conf = (res / "user.conf").read_text()
    assert "stable-diffusion-xl.Offline.min_duration = 300" in user_conf
    assert "stable-diffusion-xl.Offline.target_qps = 100" in user_conf
    # LoadGen ignores seed lines in a user.conf: none is written; the file says where the seeds came from.
    assert "rng_seed" not in user_conf and "# Seeds: those of round v6.0, set by t2i-harness" in user_conf
    system = json.loads((org / "systems" / "cpu_dev.json").read_text())
    assert system["submitter"] == "DevOrg" and system["cooling"] == "air" and system["host_processor_model_name"]
    # Sample 52 is among the 64 prompts of the tiny model's pack; the other nine ids are not.
    assert sorted(p.name for p in (res / "accuracy" / "images").iterdir()) == ["52.png", "captions.txt"]

    check = _harness(harness_cache, tmp_path, "check-submission", str(out))
    assert check.returncode == 1, check.stdout + check.stderr
    rel = "closed/DevOrg/results/cpu_dev/stable-diffusion-xl/Offline"
    expected = set()
    for perf in ("performance/run_1", "TEST01/performance/run_1", "TEST04/performance/run_1"):
        detail = f"{rel}/{perf}/mlperf_log_detail.txt"
        # the development overrides: 300 ms instead of 600 s, 40 samples instead of 5000 ...
        expected |= {("min-duration", detail), ("min-query-count", detail)}
        # ... and the tiny model's 64 prompts instead of the 5000 captions
        expected.add(("performance-sample-count", detail))
    for test in ("TEST01", "TEST04"):  # timing noise on a busy machine can fail the 10 % rule; say so
        if not json.loads((dev_runs[test] / "compliance.json").read_text())["passed"]:
            expected.add(("compliance", f"{rel}/{test}/verify_performance.txt"))
    expected |= {
        ("accuracy-sample-count", f"{rel}/accuracy/mlperf_log_detail.txt"),  # 64 prompts, not 5000
        ("accuracy-window", f"{rel}/accuracy/accuracy.txt"),  # no CLIP/FID for the tiny model
        ("images", f"{rel}/accuracy/images"),  # ids 1311, ... are not among 64 prompts
        # an edge system (the template's default) submits SingleStream too
        ("scenarios", "closed/DevOrg/results/cpu_dev/stable-diffusion-xl"),
    }
    assert _failures(check.stdout) == expected, check.stdout
    detail = f"{rel}/performance/run_1/mlperf_log_detail.txt"
    assert (
        f"FAIL [min-duration] {detail}: effective_min_duration_ms = 300; the rules need >= 600000 (600 s)"
        in check.stdout.splitlines()
    )
    spq = re.search(r"effective_samples_per_query = (\d+); Offline needs >= 5000", check.stdout)
    assert spq and int(spq.group(1)) < 5000
    assert f"FAIL [performance-sample-count] {detail}: effective_performance_sample_count = 64; need >= 5000" in (
        check.stdout.splitlines()
    )


def test_empty_required_system_fields_are_named(harness_cache: Path, dev_runs: dict[str, Path], tmp_path: Path) -> None:
    proc = _submit(harness_cache, dev_runs, tmp_path / "submission")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    named = re.search(r"required fields are empty: ([\w, -]+);", errors[0])
    assert named, errors[0]
    # Everything the machine cannot tell; the rest (CPU, memory, OS, software) was read.
    assert set(named.group(1).split(", ")) == {
        "system_type",
        "status",
        "host_memory_configuration",
        "host_storage_type",
        "host_networking",
        "host_network_card_count",
        "host_networking_topology",
        "accelerator_host_interconnect",
        "accelerator_memory_configuration",
        "accelerator_interconnect",
        "cooling",
    }
    assert not (tmp_path / "submission").exists()


@pytest.mark.parametrize(
    "pick, message",
    [
        (("performance", "TEST01"), "Offline: no accuracy run among the run directories"),
        (("performance", "performance", "accuracy"), "two performance runs for Offline"),
        (("missing",), "does not exist"),
    ],
)
def test_bad_run_sets_are_one_line_and_exit_code_2(
    harness_cache: Path, dev_runs: dict[str, Path], tmp_path: Path, pick: tuple[str, ...], message: str
) -> None:
    dirs = [str(dev_runs.get(k, tmp_path / "nope")) for k in pick]
    if pick.count("performance") == 2:  # a second performance run: a copy of the first
        import shutil

        shutil.copytree(dev_runs["performance"], tmp_path / "copy")
        dirs[1] = str(tmp_path / "copy")
    args = ["submission", "--org", "O", "--system", "S", "--division", "closed", "--output", str(tmp_path / "out")]
    proc = _harness(harness_cache, tmp_path, *args, "--system-info", str(dev_runs["info"]), *dirs)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr


def test_truncation_keeps_head_and_tail(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b"[" + b"A" * 20000 + b"]\n")
    assert truncate_accuracy_log(big, tmp_path / "out.json")
    out = (tmp_path / "out.json").read_bytes()
    assert out == big.read_bytes()[:4096] + b"\n\n...\n\n" + big.read_bytes()[-4096:]
    small = tmp_path / "small.json"
    small.write_bytes(b"[\n]\n")
    assert not truncate_accuracy_log(small, tmp_path / "small_out.json")
    assert (tmp_path / "small_out.json").read_bytes() == b"[\n]\n"


def test_the_tree_says_what_ran_and_warns_about_it(
    harness_cache: Path, dev_runs: dict[str, Path], tmp_path: Path
) -> None:
    """The fake backend loaded no weights and ran no model: measurements.json and the system file say so
    (not the SDXL weights, not uint8, not the installed frameworks), and a closed tree of it warns."""
    out = tmp_path / "submission"
    proc = _submit(harness_cache, dev_runs, out, "--system-info", str(dev_runs["info"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    org = out / "closed" / "DevOrg"
    res = org / "results" / "cpu_dev" / "stable-diffusion-xl" / "Offline"
    measurements = json.loads((res / "measurements.json").read_text())
    assert measurements["starting_weights_filename"].startswith("none: the fake backend loads no weights")
    assert measurements["weight_data_types"] == "none" and measurements["backend"] == "fake"
    assert measurements["resolution"] == "64x64"
    system = json.loads((org / "systems" / "cpu_dev.json").read_text())
    assert system["framework"].startswith("none: the fake backend ran no model")
    warnings = proc.stderr
    assert "backend 'fake' ran no model; a closed tree of it is a rehearsal" in warnings
    assert "is not a closed-division benchmark run: model 'tiny' is a development model" in warnings
    assert "a edge system submits SingleStream, Offline for stable-diffusion-xl in v6.0" in warnings
    # calibration.md (the older checker requires it) and the code itself in src/.
    assert "performs no post-training quantization" in (org / "calibration.md").read_text()
    code = org / "src" / "t2i-harness"
    assert (code / "harness" / "mlperf" / "submission.py").is_file() and (code / "pyproject.toml").is_file()
    assert not [p for p in code.rglob("*") if p.name.startswith(".") or p.name == "__pycache__"]
    assert (org / "src" / "README.md").read_text().startswith("# Source")


def test_sdxl_with_the_fake_backend_runs_for_a_round(harness_cache: Path, tmp_path: Path) -> None:
    """`--model sdxl --backend fake` is not refused for sdxl.toml's backend.device; a run made for v6.0
    gets the v6.0 seeds with no seed flag and records the round, what ran and why it is no benchmark run."""
    args = ["--model", "sdxl", "--backend", "fake", "--scenario", "Offline", "--output-dir", str(tmp_path / "runs")]
    sets = ["dataset.count=4", "loadgen.min_duration_ms=100", "loadgen.min_query_count=4"]
    sets += ["loadgen.offline_expected_qps=100", "model.height=64", "model.width=64", "mlperf.round=v6.0"]
    proc = _harness(harness_cache, tmp_path, *args, "--no-progress", *[x for s in sets for x in ("--set", s)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]  # runs/ also holds history.sqlite
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["mlperf"]["round"] == "v6.0" and manifest["ran"]["runs_model"] is False
    detail = (run / "mlperf_log_detail.txt").read_text()
    for key, seed in zip(rules.SEED_KEYS, V60.seeds, strict=True):
        assert f'"key": "effective_{key}", "value": {seed},' in detail
    blockers = json.loads((run / "summary.json").read_text())["submission_blockers"]
    assert any(b.startswith("backend 'fake' runs no model") for b in blockers)
    assert any(b.startswith("model.height = 64") for b in blockers)
    assert not any("round" in b for b in blockers)


def test_the_default_output_is_ignored_by_git() -> None:
    """A tree built with the default --output inside the checkout must not make every later run record
    `git.dirty: true` (issue 22, point 7)."""
    from harness.commands.submission import build_parser

    default = build_parser().get_default("output")
    probe = f"{default}/closed/Org/systems/sys.json"
    proc = subprocess.run(["git", "check-ignore", "-q", probe], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"{default}/ is not git-ignored: {proc.stderr}"
