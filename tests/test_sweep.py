"""`python -m harness sweep`: resolutions x steps x batch sizes, the batch ramp, quality per point."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands.sweep import RAMP_COLUMNS, ROW_COLUMNS, _result, peak_memory_mib
from harness.errors import ConfigError
from harness.studies.batch_ramp import ramp_batch_sizes, run_ramp
from harness.studies.sweep_plan import SweepPlan, load_plan, override

ROOT = Path(__file__).resolve().parent.parent
# Each point a short LoadGen run: 8 samples, no minimum duration to speak of.
QUICK = [
    "--set",
    "loadgen.min_duration_ms=300",
    "--set",
    "loadgen.min_query_count=8",
    "--set",
    "loadgen.offline_expected_qps=1",
    "--set",
    "loadgen.single_stream_expected_latency_ns=20000000",
]


def _sweep(
    harness_cache: Path, tmp_path: Path, *args: str, timeout: float = 120
) -> tuple[subprocess.CompletedProcess, Path]:
    env = dict(os.environ, HARNESS_CACHE_DIR=str(harness_cache))
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "sweep", "--backend", "fake", "--output-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )
    dirs = sorted(tmp_path.glob("*-sweep-tiny-fake"))
    return proc, dirs[-1] if dirs else tmp_path


def test_sweep_rows_come_from_the_child_runs(harness_cache: Path, tmp_path: Path) -> None:
    proc, out = _sweep(
        harness_cache,
        tmp_path,
        "--resolutions",
        "32,64",
        "--steps",
        "2",
        "--batch-sizes",
        "2",
        *QUICK,
        "--set",
        "backend.latency_ms=20",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "sweep.json").read_text())
    assert set(doc) >= {"rows", "ramp", "by_category"} and doc["ramp"] == [] and doc["by_category"] == []
    rows = doc["rows"]
    points = [(r["resolution"], r["steps"], r["scenario"], r["batch_size"]) for r in rows]
    assert points == [
        (res, steps, scenario, 1 if scenario == "SingleStream" else 2)
        for res in (32, 64)
        for steps in (2,)
        for scenario in ("SingleStream", "Offline")
    ]
    for r in rows:
        assert list(r) == ROW_COLUMNS and r["status"] == "ok" and r["error"] is None
        summary = json.loads((Path(r["run_dir"]) / "summary.json").read_text())
        config = (Path(r["run_dir"]) / "config.toml").read_text()
        assert f"height = {r['resolution']}" in config and f"steps = {r['steps']}" in config
        assert summary["scenario"] == r["scenario"]
        assert r["images_per_second"] == summary["samples_per_second"] > 0
        assert r["peak_memory_mib"] == max(v for v in summary["peak_memory"].values() if v is not None)
        if r["scenario"] == "SingleStream":
            assert r["seconds_per_image"] == pytest.approx(summary["latency_ms"]["mean"] / 1e3)
            assert r["latency_p50_ms"] == summary["latency_ms"]["p50"] <= r["latency_p99_ms"]
            assert r["seconds_per_image"] >= 0.02  # the fake sleeps 20 ms per call
        else:
            assert summary["batch_sizes"] == {"2": 4}  # 8 samples in batches of 2
            assert r["seconds_per_image"] is None and r["latency_p50_ms"] is None
    with (out / "sweep.csv").open() as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ROW_COLUMNS and len(table) == len(rows)
    assert (out / "ramp.csv").read_text().strip() == ",".join(RAMP_COLUMNS)
    assert "seconds per image | images per second | peak memory" in proc.stdout


@pytest.mark.slow
def test_the_ramp_records_out_of_memory_marks_the_best_and_goes_on(harness_cache: Path, tmp_path: Path) -> None:
    # 100 ms per call whatever the batch: throughput doubles with the batch until a batch of 4 runs out of memory.
    proc, out = _sweep(
        harness_cache,
        tmp_path,
        "--resolutions",
        "32",
        "--steps",
        "2,3",
        "--scenarios",
        "Offline",
        "--ramp",
        *QUICK,
        "--set",
        "backend.latency_ms=100",
        "--set",
        "backend.oom_above_batch=2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]  # running out of memory ends a ramp; it is not a failure
    doc = json.loads((out / "sweep.json").read_text())
    for steps in (2, 3):
        ramp = [p for p in doc["ramp"] if p["steps"] == steps]
        assert [(p["batch_size"], p["status"], p["best"]) for p in ramp] == [
            (1, "ok", False),
            (2, "ok", True),
            (4, "oom", False),
        ]
        assert "MemoryError" in ramp[2]["error"] and ramp[2]["images_per_second"] is None
        assert ramp[1]["images_per_second"] > 1.6 * ramp[0]["images_per_second"]
    # The Offline batch-1 row is the ramp's first run, not a second one.
    assert len([p for p in (out / "runs").iterdir() if p.is_dir()]) == 6
    with (out / "ramp.csv").open() as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok", "ok", "oom"] * 2


@pytest.mark.slow
def test_quality_puts_clip_into_the_rows(harness_cache: Path, tmp_path: Path) -> None:
    proc, out = _sweep(
        harness_cache,
        tmp_path,
        "--resolutions",
        "32",
        "--steps",
        "2",
        "--scenarios",
        "SingleStream,Offline",
        "--quality",
        *QUICK,
        *("--set", "dataset.count=12", "--set", "cost.gpu_hour_usd=2.5"),
        # stand-in CLIP scores are negative (about -3 to -5): a rule that accepts some of them
        *("--set", "cost.accept_clip_min=-3.8"),
        *("--set", "quality.diversity_seeds=2", "--set", "quality.diversity_prompts=2"),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "sweep.json").read_text())
    (quality,) = doc["quality"]
    accuracy = json.loads((Path(quality["run_dir"]) / "accuracy.json").read_text())
    assert quality["clip_score"] == accuracy["CLIP_SCORE"] == doc["rows"][0]["clip_score"]
    expected = [{"category": k, **v} for k, v in accuracy["by_category"].items()]
    assert len(expected) >= 2  # the first 12 prompts of the default pack span two categories
    assert [{k: c[k] for k in ("category", "clip_score", "count")} for c in doc["by_category"]] == [
        {k: e.get(k) for k in ("category", "clip_score", "count")} for e in expected
    ]
    # LPIPS diversity of the quality run, and the cost of each row from its own throughput
    child = json.loads((Path(quality["run_dir"]) / "summary.json").read_text())
    assert quality["lpips_diversity"] == child["quality"]["lpips_diversity"]["mean"] is not None
    share = sum(c >= -3.8 for c in accuracy["clip_scores"]) / len(accuracy["clip_scores"])
    assert 0 < share < 1 and quality["accepted_share"] == pytest.approx(share)  # the rule splits the images
    for r in doc["rows"]:
        # throughput: Offline's samples/s; SingleStream's 1 / mean latency (harness/measure/cost.py)
        ips = r["images_per_second"] if r["scenario"] == "Offline" else 1 / r["seconds_per_image"]
        assert r["cost_per_image_usd"] == pytest.approx(2.5 / 3600 / ips, rel=1e-4)
        assert r["images_per_usd"] == pytest.approx(1 / r["cost_per_image_usd"], rel=1e-3)
        assert r["cost_per_accepted_image_usd"] == pytest.approx(r["cost_per_image_usd"] / share)
        assert r["first_image_cold_s"] > r["first_image_warm_s"] > 0
    # the sweep's report: quality tables, LPIPS, the quality run's images, the SingleStream latency plot
    md = (out / "report.md").read_text()
    for heading in ("Quality per resolution and steps", "LPIPS diversity", "Sweep quality by prompt category"):
        assert heading in md
    for fig in ("sweep_contact_sheet_1", "sweep_latency_distribution"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resolutions", "abc"], "resolutions must be comma-separated integers"),
        (["--steps", "0"], "steps must be comma-separated integers >= 1"),
        (["--scenarios", "Offlin"], "unknown scenario"),
        (["--resolutions", "30"], "multiples of model.vae_scale_factor"),
        (["--ramp-min-gain", "x"], "--ramp-min-gain (0.03 = 3%) must be a number, got 'x'"),
        (["--fit-memory-fraction", "most"], "--fit-memory-fraction (0.85 = 85% of the device) must be a number"),
        (["--fit-memory-fraction", "1.2"], "fit_memory_fraction must be in (0, 1], got 1.2"),
        (["--set", "loadgen.no_such_setting=1"], "unknown LoadGen setting"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "sweep", "--output-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:") and message in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing ran


# The ramp's stopping rule, with measured throughputs given -----------------------------------------


def _measure(throughputs: dict[int, float | str]):
    calls: list[int] = []

    def measure(b: int) -> dict:
        calls.append(b)
        value = throughputs[b]
        if value == "oom":
            return {"images_per_second": None, "status": "oom", "error": "MemoryError"}
        return {"images_per_second": value, "peak_memory_mib": 100.0 * b, "status": "ok", "error": None}

    return measure, calls


def test_the_ramp_stops_when_throughput_stops_rising() -> None:
    measure, calls = _measure({1: 10.0, 2: 18.0, 4: 30.0, 8: 30.5, 16: 40.0})
    points = run_ramp(measure, max_batch=64, min_gain=0.03)
    assert calls == [1, 2, 4, 8]  # 8 gains under 3% over 4: stop, 16 never runs
    assert [p["best"] for p in points] == [False, False, False, True]  # 8 is still the highest
    measure, calls = _measure({1: 10.0, 2: 18.0, 4: 17.0})
    points = run_ramp(measure, max_batch=64, min_gain=0.03)
    assert calls == [1, 2, 4] and [p["batch_size"] for p in points if p["best"]] == [2]


def test_the_ramp_stops_at_out_of_memory_and_at_max_batch() -> None:
    measure, calls = _measure({1: 10.0, 2: 20.0, 4: "oom", 8: 80.0})
    points = run_ramp(measure, max_batch=64)
    assert calls == [1, 2, 4] and points[-1]["status"] == "oom" and points[1]["best"]
    measure, calls = _measure({1: 10.0, 2: 20.0, 4: 40.0, 6: 60.0, 8: 80.0})
    run_ramp(measure, max_batch=6)
    assert calls == [1, 2, 4, 6]
    assert ramp_batch_sizes(64) == [1, 2, 4, 8, 16, 32, 64] and ramp_batch_sizes(1) == [1]
    measure, calls = _measure({1: "oom"})
    assert not any(p["best"] for p in run_ramp(measure))


def test_a_run_that_dies_before_its_summary_is_classified_from_stderr(tmp_path: Path) -> None:
    oom = subprocess.CompletedProcess([], 1, "", "Traceback ...\ntorch.OutOfMemoryError: CUDA out of memory. Tried")
    res = _result(oom, None)
    assert res["status"] == "oom" and "CUDA out of memory" in res["error"] and res["summary"] is None
    bad = subprocess.CompletedProcess([], 2, "", "loading\nerror: model folder 'x' does not exist\n")
    assert _result(bad, tmp_path / "run" / "summary.json") == {
        "status": "error",
        "error": "model folder 'x' does not exist",
        "summary": None,
        "run_dir": str(tmp_path / "run"),
    }


def test_peak_memory_prefers_the_device_figure() -> None:
    cpu = {"cpu_rss_mib": 500.0, "children_rss_mib": 900.0, "cuda_allocated_mib": None, "cuda_reserved_mib": None}
    assert peak_memory_mib({"peak_memory": cpu}) == 900.0
    assert (
        peak_memory_mib({"peak_memory": {**cpu, "cuda_allocated_mib": 3000.0, "cuda_reserved_mib": 3500.0}}) == 3500.0
    )
    assert peak_memory_mib(None) is None


def test_a_plan_file_gives_the_lists_and_flags_win(tmp_path: Path) -> None:
    plan_file = tmp_path / "sweep.toml"
    plan_file.write_text('resolutions = [512, 1024]\nsteps = [4, 8]\nscenarios = ["Offline"]\nramp = true\n')
    plan = load_plan(plan_file)
    assert plan == SweepPlan(resolutions=(512, 1024), steps=(4, 8), scenarios=("Offline",), ramp=True)
    assert override(plan, {"steps": "2", "ramp": None}).steps == (2,)
    plan_file.write_text("resolution = [512]\n")
    with pytest.raises(ConfigError, match="unknown key.*resolution"):
        load_plan(plan_file)
    with pytest.raises(ConfigError, match="batch_sizes must be"):
        override(plan, {"batch_sizes": [1.5]})


def test_fit_is_a_batch_size_word() -> None:
    assert override(SweepPlan(), {"batch_sizes": "1,fit"}) == SweepPlan(batch_sizes=(1,), fit=True)
    assert override(SweepPlan(), {"batch_sizes": ["fit"]}) == SweepPlan(batch_sizes=(), fit=True)
    assert override(SweepPlan(batch_sizes=(), fit=True), {"batch_sizes": "4"}) == SweepPlan(batch_sizes=(4,))
    for bad in ("1,fitt", "", "0,fit"):
        with pytest.raises(ConfigError, match="batch_sizes must be comma-separated integers >= 1 or fit"):
            override(SweepPlan(), {"batch_sizes": bad})


def test_fit_is_refused_for_a_backend_built_per_batch_size(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "sweep", "--output-dir", str(tmp_path), "--backend", "torch-compile"]
        + ["--batch-sizes", "1,fit"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--batch-sizes fit cannot probe backend 'torch-compile'" in proc.stderr
    assert not list(tmp_path.iterdir())


# One resolution and step count, Offline only, short LoadGen runs.
ONE_POINT_OFFLINE = ["--resolutions", "32", "--steps", "2", "--scenarios", "Offline", *QUICK]


@pytest.mark.slow
def test_fit_adds_the_largest_batch_and_caps_the_ramp(harness_cache: Path, tmp_path: Path) -> None:
    # The fake backend runs out of memory above a batch of 5: the search finds 5, Offline runs at 1 and 5, and
    # the ramp tries 1, 2, 4, 5 (never a size that does not fit).
    proc, out = _sweep(
        harness_cache,
        tmp_path,
        *ONE_POINT_OFFLINE,
        "--batch-sizes",
        "1,fit",
        "--ramp",
        "--set",
        "backend.latency_ms=50",
        "--set",
        "backend.oom_above_batch=5",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "sweep.json").read_text())
    (fit,) = doc["fit"]
    assert doc["weights"] == "pretrained"  # the report flags "random" sweeps
    assert (fit["largest_batch"], fit["limited_by"], fit["probes"], fit["status"]) == (5, "memory", 6, "ok")
    assert json.loads((Path(fit["run_dir"]) / "fit.json").read_text())["largest_batch"] == 5
    assert [(r["batch_size"], r["status"]) for r in doc["rows"]] == [(1, "ok"), (5, "ok")]
    assert [(p["batch_size"], p["status"]) for p in doc["ramp"]] == [(1, "ok"), (2, "ok"), (4, "ok"), (5, "ok")]
    # QUICK asks for 8 samples; a batch of 5 gets 10, two full batches.
    b5 = Path(next(r["run_dir"] for r in doc["rows"] if r["batch_size"] == 5))
    assert json.loads((b5 / "summary.json").read_text())["samples_completed"] == 10
    with (out / "fit.csv").open() as f:
        assert [(r["largest_batch"], r["limited_by"]) for r in csv.DictReader(f)] == [("5", "memory")]
    assert "largest batch that fits" in proc.stdout and "Largest batch that fits" in (out / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("limit", "scenarios", "rows", "full_run_batch", "full_run_oom", "code"),
    [
        # Fits at 16 in fit's 1-step probes; full (2-step) runs fit up to 9: 16 and 12 run out, 9 runs.
        (9, "Offline", [("Offline", 1, "ok"), ("Offline", 9, "ok")], 9, "16,12", 0),
        # Up to 5 only: after two step-downs (16, 12, 9) the sweep leaves the fitted batch out and says so.
        (5, "Offline", [("Offline", 1, "ok")], None, "16,12,9", 1),
        # Offline settles the batch (a Server run need not fill a batch of 16), then both run at 9.
        (
            9,
            "Server,Offline",
            [("Server", 1, "ok"), ("Server", 9, "ok"), ("Offline", 1, "ok"), ("Offline", 9, "ok")],
            9,
            "16,12",
            0,
        ),
    ],
)
def test_a_fitted_batch_that_runs_out_of_memory_in_a_full_run_steps_down(
    harness_cache: Path,
    tmp_path: Path,
    limit: int,
    scenarios: str,
    rows: list[tuple[str, int, str]],
    full_run_batch: int | None,
    full_run_oom: str,
    code: int,
) -> None:
    proc, out = _sweep(
        harness_cache,
        tmp_path,
        *ONE_POINT_OFFLINE,
        "--scenarios",
        scenarios,
        "--batch-sizes",
        "1,fit",
        "--max-batch",
        "16",
        "--fit-memory-fraction",
        "0.5",
        "--set",
        f"backend.full_run_oom_above_batch={limit}",
        "--set",
        "loadgen.server_target_qps=50",
    )
    assert proc.returncode == code, proc.stderr[-3000:]
    doc = json.loads((out / "sweep.json").read_text())
    (fit,) = doc["fit"]
    assert (fit["largest_batch"], fit["limited_by"]) == (16, "max_batch")
    assert (fit["full_run_batch"], fit["full_run_oom"]) == (full_run_batch, full_run_oom)
    assert fit["status"] == ("ok" if full_run_batch else "oom")
    assert fit["memory_fraction"] == 0.5 and fit["memory_limit_mib"] is None  # passed to fit; no CUDA to cap
    assert [(r["scenario"], r["batch_size"], r["status"]) for r in doc["rows"]] == rows
    assert "a full Offline run at batch 16 ran out of memory; trying 12" in proc.stdout
    with (out / "fit.csv").open() as f:
        assert [(r["full_run_batch"], r["full_run_oom"]) for r in csv.DictReader(f)] == [
            (str(full_run_batch or ""), full_run_oom)
        ]
    if not full_run_batch:
        assert "full Offline runs ran out of memory at batch 16,12,9" in (out / "report.md").read_text()


def test_the_offline_floor_keeps_a_larger_query_count(tmp_path: Path, harness_cache: Path) -> None:
    from harness.commands.sweep import Sweep, build_parser

    args = build_parser().parse_args(["--backend", "fake"])
    sweep = Sweep(args, SweepPlan(), tmp_path)
    assert sweep._full_batches(["loadgen.min_query_count=8"], 5) == ["loadgen.min_query_count=10"]
    assert sweep._full_batches(["loadgen.min_query_count=64"], 5) == []
    assert sweep._full_batches(["loadgen.min_query_count=10"], 5) == []


@pytest.mark.slow
def test_a_failed_fit_is_a_failed_point_and_no_offline_run(harness_cache: Path, tmp_path: Path) -> None:
    proc, out = _sweep(
        harness_cache, tmp_path, *ONE_POINT_OFFLINE, "--batch-sizes", "fit", "--set", "backend.fail_at_call=1"
    )
    assert proc.returncode == 1
    doc = json.loads((out / "sweep.json").read_text())
    (fit,) = doc["fit"]
    assert (fit["largest_batch"], fit["limited_by"], fit["status"]) == (0, "error", "error")
    assert "injected failure on call 1" in fit["error"] and doc["rows"] == []
    assert "largest-batch search resolution=32, steps=2 error" in (out / "report.md").read_text()


@pytest.mark.slow
def test_every_row_carries_loadgens_verdict_and_short_points_run_again(harness_cache: Path, tmp_path: Path) -> None:
    """Issue 22: a batch-4 Offline point given the batch-1 rate ended before LoadGen's minimum duration
    (INVALID) while the terminal said "ok". Now each row has the verdict, a point too short for its measured
    rate runs once more with it, and a point still INVALID (here: 8 SingleStream queries, fewer than early
    stopping needs, as the user's --set asks) is never called ok."""
    proc, out = _sweep(
        harness_cache,
        tmp_path,
        "--batch-sizes",
        "1,4",
        "--set",
        "backend.latency_ms=20",
        "--set",
        "loadgen.min_duration_ms=1000",
        "--set",
        "loadgen.min_query_count=8",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {(r["scenario"], r["batch_size"]): r for r in json.loads((out / "sweep.json").read_text())["rows"]}
    for (scenario, batch), r in rows.items():
        summary = json.loads((Path(r["run_dir"]) / "summary.json").read_text())
        assert r["loadgen_validity"] == summary["loadgen"]["result_validity"], (scenario, batch)
    offline = [rows[("Offline", 1)], rows[("Offline", 4)]]
    assert all(r["loadgen_validity"] == "VALID" and r["invalid_reason"] is None for r in offline), offline
    assert "running it again with loadgen.offline_expected_qps=" in proc.stdout
    single = rows[("SingleStream", 1)]
    assert single["loadgen_validity"] == "INVALID" and "Need to process at least 64 queries" in single["invalid_reason"]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("r64-s8-b1-SingleStream-performance:"))
    assert ": ok" not in line and "LoadGen INVALID" in line
    assert "1 of 3 points are LoadGen INVALID" in proc.stdout
    with (out / "sweep.csv").open() as f:
        assert [r["loadgen_validity"] for r in csv.DictReader(f)].count("INVALID") == 1
