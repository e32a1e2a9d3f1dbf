"""`python -m harness check-submission`: a tree that `submission` builds from synthetic but
rule-conforming LoadGen logs passes; every rule broken on purpose is found, and only that rule."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from harness.config import to_toml
from harness.mlperf import rules
from harness.mlperf.checker import check_tree
from harness.mlperf.submission import Builder, read_run
from tests.conftest import ROOT

V60 = rules.ROUNDS["v6.0"]
SIZE = 8  # synthetic images: 8 x 8 x 3
ORG, SYSTEM = "TestOrg", "sys1"
RESULTS = f"closed/{ORG}/results/{SYSTEM}/stable-diffusion-xl"
SYSTEM_INFO = """
[system]
status = "available"
system_type = "datacenter,edge"
host_storage_type = "NVMe SSD"
host_memory_configuration = "16x 64GB DDR5"
host_networking = "Ethernet"
host_network_card_count = "1"
host_networking_topology = "N/A"
accelerator_host_interconnect = "PCIe Gen5 x16"
accelerator_memory_capacity = "80 GB"
accelerator_memory_configuration = "HBM3"
accelerator_interconnect = "N/A"
cooling = "air"
"""


# Synthetic LoadGen logs ------------------------------------------------------------------------------
def mllog(key: str, value: object, error: bool = False) -> str:
    meta = {"is_error": error, "is_warning": False, "file": "synthetic.cc", "line_no": 1, "pid": 1, "tid": 1}
    entry = {"key": key, "value": value, "time_ms": 0.0, "namespace": "mlperf::logging", "metadata": meta}
    return ":::MLLOG " + json.dumps(entry)


def detail_values(scenario: str, mode: str) -> dict[str, object]:
    """What a conforming v6.0 run logs (the keys the checker reads)."""
    values: dict[str, object] = {
        "loadgen_version": "6.0.12 @ 0123456789",
        "qsl_reported_total_count": 5000,
        "qsl_reported_performance_count": 5000,
        "effective_scenario": scenario,
        "effective_test_mode": "AccuracyOnly" if mode == "accuracy" else "PerformanceOnly",
        "effective_samples_per_query": 5000 if scenario == "Offline" else 1,
        "effective_target_latency_ns": 20_000_000_000 if scenario == "Server" else 0,
        "effective_min_duration_ms": 600_000,
        "effective_min_query_count": rules.MIN_QUERY_COUNT[scenario],
        "effective_performance_sample_count": 5000,
        "effective_accuracy_sample_count": 5000,
        **{f"effective_{k}": v for k, v in zip(rules.SEED_KEYS, V60.seeds, strict=True)},
    }
    if mode != "accuracy":
        values |= {"result_validity": "VALID", "early_stopping_met": True, "early_stopping_result": " * Processed."}
        values["result_samples_per_second" if scenario == "Offline" else "result_completed_samples_per_sec"] = 2.2
    return values


def write_detail(path: Path, values: dict[str, object], errors: int = 0) -> None:
    lines = [mllog(k, v) for k, v in values.items()]
    lines += [mllog("error_runtime", f"synthetic error {i}", error=True) for i in range(errors)]
    path.write_text("\n".join(lines) + "\n")


def edit_detail(path: Path, **changes: object) -> None:
    values = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line[len(":::MLLOG ") :])
        values[entry["key"]] = entry["value"]
    write_detail(path, {**values, **changes})


def image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)


def accuracy_log(path: Path, ids: list[int]) -> None:
    entries = [
        f'{{ "seq_id" : {n}, "qsl_idx" : {i}, "data" : "{image(i).tobytes().hex().upper()}" }}'
        for n, i in enumerate(ids)
    ]
    path.write_text("[\n" + ",\n".join(entries) + "\n]\n")


def write_run(root: Path, kind: str, scenario: str, tsv: Path, perf: Path | None = None) -> Path:
    """A run directory as the harness writes one: summary, config, manifest, LoadGen logs."""
    mode = "accuracy" if kind == "accuracy" else "performance"
    d = root / f"{scenario}-{kind}"
    d.mkdir(parents=True)
    summary = {"status": "ok", "mode": mode, "scenario": scenario, "model": "sdxl", "result_valid": mode != "accuracy"}
    summary["loadgen"] = {"result_validity": "VALID" if mode != "accuracy" else None}
    (d / "summary.json").write_text(json.dumps(summary))
    config = {
        "user_conf": "",
        "run": {"scenario": scenario, "mode": mode, "backend": "diffusers-eager"},
        "model": {
            "name": "sdxl",
            "mlperf_name": rules.BENCHMARK,
            "hub_id": "stabilityai/sdxl",
            "height": SIZE,
            "width": SIZE,
        },
        "dataset": {"path": str(tsv)},
        "loadgen": {},
        "loadgen_overrides": {},
        "loadgen_resolved": {
            "offline_expected_qps": 2.5,
            "server_target_qps": 2.2,
            "server_target_latency_ns": 20_000_000_000,
        },
    }
    (d / "config.toml").write_text(to_toml(config))
    manifest = {
        "harness_version": "0.1.0",
        "git": {"commit": "0123456789abcdef", "dirty": False},
        "libraries": {"torch": "2.9.0", "diffusers": "0.35.0", "mlcommons-loadgen": "6.0.12"},
        "host": {
            "cpu": "Synthetic CPU",
            "cpu_count": 64,
            "gpus": ["NVIDIA H100 80GB HBM3"],
            "os": "Linux",
            "python": "3.11",
        },
        "backend": {"backend": "diffusers-eager", "device": "cuda", "dtype": "float16"},
        "prompts": {"source": str(tsv)},
        "mlperf": {"round": "v6.0"},
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    write_detail(d / "mlperf_log_detail.txt", detail_values(scenario, mode))
    (d / "mlperf_log_summary.txt").write_text(f"Scenario : {scenario}\nResult is : VALID\n")
    if kind == "accuracy":
        accuracy_log(d / "mlperf_log_accuracy.json", [*V60.image_ids, 7, 8])
        (d / "accuracy.txt").write_text("Accuracy Results: {'FID_SCORE': '23.5', 'CLIP_SCORE': '31.75'}\n")
    if kind in rules.COMPLIANCE_TESTS:
        (d / "compliance.json").write_text(json.dumps({"test": kind, "passed": True, "performance_run": str(perf)}))
        (d / "verify_performance.txt").write_text("Verifying performance.\nTEST PASS\n")
    if kind == "TEST01":
        (d / "verify_accuracy.txt").write_text("num_perf_log_data_mismatch = 0\nTEST PASS\n")
        accuracy_log(d / "mlperf_log_accuracy.json", [7, 8])
    return d


@pytest.fixture(scope="module")
def conforming_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Offline and Server results built by the `submission` builder from synthetic conforming runs."""
    base = tmp_path_factory.mktemp("synthetic")
    tsv = base / "captions.tsv"
    rows = [f"{i}\t{i}\ta synthetic caption number {i}\t512\t512\tf{i}.jpg\thttp://x/{i}" for i in range(5000)]
    tsv.write_text("id\timage_id\tcaption\theight\twidth\tfile_name\tcoco_url\n" + "\n".join(rows) + "\n")
    runs = []
    for scenario in ("Offline", "Server", "SingleStream"):  # what a datacenter,edge system submits for SDXL
        perf = write_run(base / "runs", "performance", scenario, tsv)
        runs += [perf, write_run(base / "runs", "accuracy", scenario, tsv)]
        runs += [write_run(base / "runs", test, scenario, tsv, perf) for test in rules.COMPLIANCE_TESTS]
    info = base / "system.toml"
    info.write_text(SYSTEM_INFO)
    builder = Builder(base / "tree", "closed", ORG, SYSTEM, V60, system_info=str(info))
    builder.build([read_run(r) for r in runs])
    return base / "tree"


@pytest.fixture
def tree(conforming_tree: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    shutil.copytree(conforming_tree, copy)
    return copy


def _rules(root: Path) -> dict[str, set[str]]:
    failures, _ = check_tree(root)
    out: dict[str, set[str]] = {}
    for f in failures:
        out.setdefault(f.rule, set()).add(str(f.path.relative_to(root)))
    return out


def test_a_conforming_tree_passes(conforming_tree: Path) -> None:
    failures, results = check_tree(conforming_tree)
    assert failures == [] and results == 3
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "check-submission", str(conforming_tree)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "PASS: 3 result(s) checked against the v6.0 rules; every rule holds"
    images = conforming_tree / RESULTS / "Offline" / "accuracy" / "images"
    assert (images / "captions.txt").read_text().splitlines()[0] == "1311  a synthetic caption number 1311"


# Each rule, broken on purpose: (rule, file it is reported on, how it is broken)
Edit = Callable[[Path], None]
OFF = f"{RESULTS}/Offline"
SRV = f"{RESULTS}/Server"
SYSTEM_JSON = f"closed/{ORG}/systems/{SYSTEM}.json"


def _json_edit(rel: str, **changes: object) -> Edit:
    def edit(root: Path) -> None:
        path = root / rel
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    return edit


def _detail_edit(rel: str, **changes: object) -> Edit:
    return lambda root: edit_detail(root / rel, **changes)


def _write(rel: str, text: str) -> Edit:
    return lambda root: (root / rel).write_text(text)


def _remove(rel: str) -> Edit:
    def edit(root: Path) -> None:
        path = root / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return edit


def _add_error(rel: str) -> Edit:
    def edit(root: Path) -> None:
        with (root / rel).open("a") as f:
            f.write(mllog("error_invalid_config", "Multiple conf files are used.", error=True) + "\n")

    return edit


def _accuracy_txt(clip: str | None, fid: str | None, hash_line: str | None = "keep") -> Edit:
    """accuracy.txt with these scores (None: no scores line), its hash line kept, replaced or dropped."""

    def edit(root: Path) -> None:
        path = root / OFF / "accuracy" / "accuracy.txt"
        old = [line for line in path.read_text().splitlines() if line.startswith("hash=")]
        lines = [f"Accuracy Results: {{'FID_SCORE': '{fid}', 'CLIP_SCORE': '{clip}'}}"] if clip else []
        lines += old if hash_line == "keep" else ([hash_line] if hash_line else [])
        path.write_text("\n".join(lines) + "\n")

    return edit


def _big_accuracy_log(root: Path) -> None:
    path = root / OFF / "accuracy" / "mlperf_log_accuracy.json"
    accuracy_log(path, list(range(40)))  # about 15 KiB: not truncated
    text = (root / OFF / "accuracy" / "accuracy.txt").read_text().splitlines()[0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (root / OFF / "accuracy" / "accuracy.txt").write_text(f"{text}\nhash={digest}\n")


def _fallback(clip_delta: float) -> Edit:
    """TEST01's byte check failed; CLIP/FID of the subset with the given relative CLIP difference."""

    def edit(root: Path) -> None:
        t01 = root / OFF / "TEST01"
        (t01 / "verify_accuracy.txt").write_text("num_perf_log_data_mismatch = 2\nTEST FAIL\n")
        (t01 / "accuracy" / "baseline_accuracy.txt").write_text(
            "Accuracy Results: {'FID_SCORE': '23.5', 'CLIP_SCORE': '31.7'}\n"
        )
        clip = 31.7 / (1 - clip_delta)
        (t01 / "accuracy" / "compliance_accuracy.txt").write_text(
            f"Accuracy Results: {{'FID_SCORE': '23.6', 'CLIP_SCORE': '{clip}'}}\n"
        )

    return edit


BROKEN: list[tuple[str, str, Edit]] = [
    ("required-files", f"{OFF}/performance/run_1", _remove(f"{OFF}/performance/run_1/mlperf_log_summary.txt")),
    ("required-files", f"closed/{ORG}/src", _remove(f"closed/{ORG}/src")),
    ("required-files", f"{OFF}/user.conf", _write(f"{OFF}/user.conf", "")),
    ("required-files", f"{SRV}/accuracy", _remove(f"{SRV}/accuracy/accuracy.txt")),
    ("system", f"closed/{ORG}/systems/{SYSTEM}.json", _json_edit(f"closed/{ORG}/systems/{SYSTEM}.json", status="soon")),
    ("system", f"closed/{ORG}/systems/{SYSTEM}.json", _json_edit(f"closed/{ORG}/systems/{SYSTEM}.json", cooling="")),
    ("system", f"closed/{ORG}/systems/{SYSTEM}.json", _json_edit(f"closed/{ORG}/systems/{SYSTEM}.json", submitter="X")),
    ("measurements", f"{OFF}/measurements.json", _json_edit(f"{OFF}/measurements.json", retraining="")),
    (
        "loadgen-errors",
        f"{OFF}/performance/run_1/mlperf_log_detail.txt",
        _add_error(f"{OFF}/performance/run_1/mlperf_log_detail.txt"),
    ),
    ("loadgen-errors", f"{OFF}/accuracy/mlperf_log_detail.txt", _add_error(f"{OFF}/accuracy/mlperf_log_detail.txt")),
    (
        "result-validity",
        f"{OFF}/performance/run_1/mlperf_log_detail.txt",
        _detail_edit(f"{OFF}/performance/run_1/mlperf_log_detail.txt", result_validity="INVALID"),
    ),
    (
        "scenario",
        f"{OFF}/performance/run_1/mlperf_log_detail.txt",
        _detail_edit(f"{OFF}/performance/run_1/mlperf_log_detail.txt", effective_scenario="SingleStream"),
    ),
    (
        "seeds",
        f"{OFF}/performance/run_1/mlperf_log_detail.txt",
        _detail_edit(
            f"{OFF}/performance/run_1/mlperf_log_detail.txt",
            effective_qsl_rng_seed=2085463073848966840,
            effective_sample_index_rng_seed=2747215439041700203,
            effective_schedule_rng_seed=16159082839903944936,
        ),
    ),
    (
        "min-duration",
        f"{OFF}/performance/run_1/mlperf_log_detail.txt",
        _detail_edit(f"{OFF}/performance/run_1/mlperf_log_detail.txt", effective_min_duration_ms=599_999),
    ),
    (
        "min-duration",
        f"{SRV}/TEST04/performance/run_1/mlperf_log_detail.txt",
        _detail_edit(f"{SRV}/TEST04/performance/run_1/mlperf_log_detail.txt", effective_min_duration_ms=60_000),
    ),
    (
        "min-query-count",
        f"{OFF}/performance/run_1/mlperf_log_detail.txt",
        _detail_edit(f"{OFF}/performance/run_1/mlperf_log_detail.txt", effective_samples_per_query=4999),
    ),
    (
        "min-query-count",
        f"{OFF}/performance/run_1/mlperf_log_detail.txt",
        _detail_edit(f"{OFF}/performance/run_1/mlperf_log_detail.txt", effective_min_query_count=0),
    ),
    (
        "performance-sample-count",
        f"{SRV}/performance/run_1/mlperf_log_detail.txt",
        _detail_edit(f"{SRV}/performance/run_1/mlperf_log_detail.txt", effective_performance_sample_count=4999),
    ),
    (
        "early-stopping",
        f"{SRV}/performance/run_1/mlperf_log_detail.txt",
        _detail_edit(f"{SRV}/performance/run_1/mlperf_log_detail.txt", early_stopping_met=False),
    ),
    (
        "latency",
        f"{SRV}/performance/run_1/mlperf_log_detail.txt",
        _detail_edit(f"{SRV}/performance/run_1/mlperf_log_detail.txt", effective_target_latency_ns=25_000_000_000),
    ),
    (
        "accuracy-sample-count",
        f"{OFF}/accuracy/mlperf_log_detail.txt",
        _detail_edit(f"{OFF}/accuracy/mlperf_log_detail.txt", effective_accuracy_sample_count=4999),
    ),
    ("accuracy-window", f"{OFF}/accuracy/accuracy.txt", _accuracy_txt("31.9", "23.5")),
    ("accuracy-window", f"{OFF}/accuracy/accuracy.txt", _accuracy_txt("31.75", "23.0")),
    (
        "accuracy-window",
        f"{OFF}/accuracy/accuracy.txt",
        _accuracy_txt(None, None),
    ),
    ("accuracy-log", f"{OFF}/accuracy/accuracy.txt", _accuracy_txt("31.75", "23.5", hash_line=None)),
    ("accuracy-log", f"{OFF}/accuracy/accuracy.txt", _accuracy_txt("31.75", "23.5", hash_line="hash=" + "1" * 64)),
    ("accuracy-log", f"{OFF}/accuracy/mlperf_log_accuracy.json", _big_accuracy_log),
    ("images", f"{OFF}/accuracy/images", _remove(f"{OFF}/accuracy/images/1311.png")),
    ("images", f"{OFF}/accuracy/images/captions.txt", _remove(f"{OFF}/accuracy/images/captions.txt")),
    ("compliance", f"{SRV}/TEST04", _remove(f"{SRV}/TEST04")),
    (
        "compliance",
        f"{OFF}/TEST04/verify_performance.txt",
        _write(f"{OFF}/TEST04/verify_performance.txt", "TEST FAIL\n"),
    ),
    # no TEST PASS, and no CLIP/FID fallback files beside the TEST01 accuracy log
    ("compliance", f"{OFF}/TEST01/accuracy", _write(f"{OFF}/TEST01/verify_accuracy.txt", "TEST FAIL\n")),
    ("compliance", f"{OFF}/TEST04/performance/run_1", _write(f"{OFF}/TEST04/performance/run_1/extra.txt", "x")),
    ("compliance", f"{OFF}/TEST01/accuracy", _fallback(0.015)),  # CLIP 1.5 % off: more than 1 %
    # The scenario sets of loader.py check_scenarios, per system type (v6.0): an edge system submits
    # SingleStream and Offline, and has no Server; SDXL is no datacenter benchmark from v6.0 on.
    ("scenarios", RESULTS, _json_edit(SYSTEM_JSON, system_type="edge")),  # edge with Server
    ("scenarios", RESULTS, lambda root: (_remove(f"{RESULTS}/SingleStream")(root), _remove(SRV)(root))),
    ("scenarios", RESULTS, _json_edit(SYSTEM_JSON, system_type="datacenter")),
    ("required-files", f"closed/{ORG}/calibration.md", _remove(f"closed/{ORG}/calibration.md")),
]


@pytest.mark.parametrize("rule, where, edit", BROKEN, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(BROKEN)])
def test_each_broken_rule_is_found_and_only_it(tree: Path, rule: str, where: str, edit: Edit) -> None:
    edit(tree)
    found = _rules(tree)
    assert set(found) == {rule}, found
    assert where in found[rule], found


def test_the_seed_message_names_the_round_and_the_loadgen_wheels(tree: Path) -> None:
    edit_detail(
        tree / OFF / "performance/run_1/mlperf_log_detail.txt",
        effective_qsl_rng_seed=2085463073848966840,
        effective_sample_index_rng_seed=2747215439041700203,
        effective_schedule_rng_seed=16159082839903944936,
    )
    (failure,) = check_tree(tree)[0]
    assert "are the v6.1 (mlcommons-loadgen 6.0.16 and 6.0.17) seeds (LoadGen 6.0.12 @ 0123456789)" in failure.reason
    assert "round v6.0 needs 2465351861681999779, 14276810075590677512, 3936089224930324775" in failure.reason


def test_a_test01_fallback_within_tolerance_passes(tree: Path) -> None:
    _fallback(0.005)(tree)  # CLIP 0.5 % off, FID 0.4 %: within 1 % and 2 %
    assert check_tree(tree)[0] == []


def test_a_truncated_log_passes_with_any_well_formed_hash(tree: Path) -> None:
    path = tree / OFF / "accuracy" / "mlperf_log_accuracy.json"
    path.write_bytes(b"[" + b"A" * 4095 + rules.TRUNCATION_MARKER.encode() + b"B" * 4094 + b"]")
    assert check_tree(tree)[0] == []


def test_the_cli_prints_each_failure_and_exits_1(tree: Path, tmp_path: Path) -> None:
    edit_detail(tree / OFF / "performance/run_1/mlperf_log_detail.txt", effective_min_duration_ms=1500)
    (tree / OFF / "accuracy" / "images" / "2476.png").unlink()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "harness", "check-submission", str(tree), "--json", str(tmp_path / "f.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"FAIL [min-duration] {OFF}/performance/run_1/mlperf_log_detail.txt: "
        "effective_min_duration_ms = 1500; the rules need >= 600000 (600 s)",
        f"FAIL [images] {OFF}/accuracy/images: missing 2476.png (v6.0 ids)",
        "2 failure(s) in 3 result(s), rules: min-duration (1), images (1)",
    ]
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["passed"] is False and [f["rule"] for f in data["failures"]] == ["min-duration", "images"]


def test_no_tree_is_bad_input(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "check-submission", str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: {str(tmp_path)!r} has no closed/ or open/ folder: give the top of a submission tree"
    )


def test_an_edge_system_with_offline_only_misses_singlestream(tree: Path) -> None:
    """What the template's default system_type and an Offline-only run produce: the official checker
    says SingleStream is missing."""
    _json_edit(SYSTEM_JSON, system_type="edge")(tree)
    _remove(SRV)(tree)
    _remove(f"{RESULTS}/SingleStream")(tree)
    (failure,) = check_tree(tree)[0]
    assert failure.rule == "scenarios"
    assert failure.reason == "missing SingleStream: a edge system submits SingleStream, Offline"


def test_a_datacenter_sdxl_tree_says_sdxl_is_an_edge_benchmark(tree: Path) -> None:
    _json_edit(SYSTEM_JSON, system_type="datacenter")(tree)
    (failure,) = check_tree(tree)[0]
    assert failure.reason.startswith("stable-diffusion-xl is not a datacenter benchmark in v6.0 (it is edge)")
    assert "wan-2.2-t2v-a14b" in failure.reason


def test_a_negative_clip_score_is_reported_with_its_value(tree: Path) -> None:
    """The official pattern has no minus sign and finds no score; the failure names the value."""
    _accuracy_txt("-3.25", "23.5")(tree)
    (failure,) = check_tree(tree)[0]
    assert failure.rule == "accuracy-window" and failure.reason.startswith("CLIP_SCORE = -3.25 is outside 31.68")
    assert "no CLIP_SCORE" not in failure.reason


def test_a_negative_clip_score_in_the_test01_fallback_is_named(tree: Path) -> None:
    t01 = tree / OFF / "TEST01"
    (t01 / "verify_accuracy.txt").write_text("TEST FAIL\n")
    for name in ("baseline_accuracy.txt", "compliance_accuracy.txt"):
        (t01 / "accuracy" / name).write_text("Accuracy Results: {'FID_SCORE': '23.5', 'CLIP_SCORE': '-3.1'}\n")
    (failure,) = check_tree(tree)[0]
    assert failure.reason == (
        "TEST01 fallback: CLIP_SCORE that the official pattern cannot read (baseline -3.1, compliance -3.1)"
    )


def test_v61_needs_its_own_seeds_and_no_images(tree: Path) -> None:
    for images in tree.glob(f"{RESULTS}/*/accuracy/images"):
        shutil.rmtree(images)  # REQUIRED_ACC_BENCHMARK has no v6.1 entry for SDXL
    failures, _ = check_tree(tree, "v6.1")
    assert {f.rule for f in failures} == {"seeds"}  # the synthetic logs carry the v6.0 seeds
    assert "make the runs with --set mlperf.round=v6.1" in failures[0].reason
    assert "a user.conf cannot set seeds" in failures[0].reason
