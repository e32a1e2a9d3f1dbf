"""`python -m harness report` and harness.report.write_report on real fake-backend runs and on sweep,
scale and compare directories written to their contracts."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.report import build_document, collect, write_report
from harness.report.collect import sut_latencies_ms, trace_latencies_ms
from harness.report.contact_sheet import categories
from harness.report.document import fmt
from tests.report_helpers import (
    PACK_CATEGORIES,
    ROOT,
    make_compare,
    make_runs,
    make_scale,
    make_sweep,
    scored_copy,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, harness_cache: Path) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("report-runs")
    made = make_runs(base, harness_cache)
    made["scored"] = scored_copy(made["accuracy"], base / "scored-run")
    made["sweep"] = make_sweep(base / "sweep-1", quality_run=made["scored"], latency_run=made["slow"])
    made["scale"] = make_scale(base / "scale-1", [made["fast"], made["slow"]])
    made["compare"] = make_compare(base / "compare-1", made["fast"], made["slow"])
    return made


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "harness", "report", *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def _table(out: Path, name: str) -> tuple[list[dict[str, str]], dict]:
    with (out / "tables" / f"{name}.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((out / "tables" / f"{name}.json").read_text())


def test_cli_writes_the_report_into_a_single_run_dir(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["fast"]
    proc = _cli(str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = (run / "report.md").read_text()
    html = (run / "report.html").read_text()
    s = _summary(run)
    manifest = json.loads((run / "manifest.json").read_text())
    # Conditions from manifest.json and config.toml.
    for text in (manifest["git"]["commit"], manifest["prompts"]["sha256"], "64x64", "StableDiffusionXLPipeline"):
        assert text in md and text in html
    assert '{"latency_ms": 2}' in md  # backend options
    # Core results from summary.json, formatted as the report formats them.
    for value in (s["samples_per_second"], s["latency_ms"]["p50"], s["latency_ms"]["p99"]):
        assert f"| {fmt(value)} |" in md
    assert fmt(s["harness"]["queue_delay_ms"]["p50"]) in md and fmt(s["harness"]["batch_time_ms"]["p50"]) in md
    assert "| handback |" in md  # the stage table
    assert (run / "figures" / "latency_distribution.png").stat().st_size > 1000
    assert "](figures/latency_distribution.png)" in md
    assert html.count("data:image/png;base64,") == 1
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)  # nothing to fetch
    assert "<script" not in html


def test_trace_has_one_latency_per_sample(runs: dict[str, Path]) -> None:
    s = _summary(runs["fast"])
    latencies = trace_latencies_ms(runs["fast"] / "mlperf_log_trace.json")
    assert len(latencies) == s["samples_completed"]
    assert max(latencies) == pytest.approx(s["latency_ms"]["max"], abs=1e-3)
    assert min(latencies) == pytest.approx(s["latency_ms"]["min"], abs=1e-3)
    assert trace_latencies_ms(runs["slow"] / "mlperf_log_trace.json") == []  # no trace: the SUT's instead


def test_without_a_trace_the_sut_latencies_agree_with_loadgen(runs: dict[str, Path]) -> None:
    """sample_latencies.csv (issue_queries to QuerySamplesComplete, in the SUT) against LoadGen's own
    percentiles of the same run: one latency per sample, the same distribution within a few ms."""
    import numpy as np

    s = _summary(runs["slow"])
    (run,) = collect([runs["slow"]])
    assert (
        len(run.latencies_ms) == s["samples_completed"] == len(sut_latencies_ms(runs["slow"] / "sample_latencies.csv"))
    )
    for key, q in (("p50", 50), ("p90", 90), ("max", 100)):
        assert np.percentile(run.latencies_ms, q) == pytest.approx(s["latency_ms"][key], abs=5.0)


def test_a_failed_run_is_called_out_at_the_top(runs: dict[str, Path], tmp_path: Path) -> None:
    md_path, html_path = write_report([runs["failed"]], tmp_path / "out")
    md, html = md_path.read_text(), html_path.read_text()
    head = md.split("## ", 1)[0]  # before the first section
    assert "PROBLEM(S)" in head and "run FAILED" in head and "injected failure on call 2" in head
    assert "backend 'fake'" in head
    assert 'class="alert"' in html and "injected failure on call 2" in html.split("<h2>", 1)[0]
    rows, doc = _table(tmp_path / "out", "problems")
    assert doc["columns"] == ["run", "status", "problem"]
    assert any(r["status"] == "failed" and "injected failure" in r["problem"] for r in rows)
    # A clean run says so instead.
    md_ok = write_report([runs["accuracy"]], tmp_path / "ok")[0].read_text()
    assert "PROBLEM(S)" not in md_ok and "none: every run finished" in md_ok


def test_random_weights_are_called_out_at_the_top(runs: dict[str, Path], tmp_path: Path) -> None:
    run = shutil.copytree(runs["fast"], tmp_path / "random-run")
    summary = _summary(run) | {"weights": "random"}
    (run / "summary.json").write_text(json.dumps(summary))
    sweep = shutil.copytree(runs["sweep"], tmp_path / "random-sweep")
    doc = json.loads((sweep / "sweep.json").read_text()) | {"weights": "random"}
    (sweep / "sweep.json").write_text(json.dumps(doc))
    md = write_report([run, sweep], tmp_path / "out")[0].read_text()
    assert "PROBLEM(S)" in md.split("## ", 1)[0]
    rows, _ = _table(tmp_path / "out", "problems")
    flagged = {r["run"] for r in rows if r["problem"].startswith("random weights (model.weights = random)")}
    assert flagged == {"random-run", "random-sweep"}
    # The same run with its real weights has no such row.
    write_report([runs["fast"]], tmp_path / "real")
    assert not (tmp_path / "real" / "tables" / "problems.csv").exists() or not any(
        "random weights" in r["problem"] for r in _table(tmp_path / "real", "problems")[0]
    )


def test_two_runs_show_deltas_against_the_first(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "ab"
    md = write_report([runs["fast"], runs["slow"]], out)[0].read_text()
    assert f"Comparison with the first run ({runs['fast'].name})" in md
    fast, slow = _summary(runs["fast"]), _summary(runs["slow"])
    rows, doc = _table(out, "comparison")
    assert doc["columns"] == ["metric", "run", "value", "baseline", "delta", "delta_pct"]
    by_metric = {r["metric"]: r for r in doc["rows"]}
    for metric, a, b in (
        ("samples_per_second", fast["samples_per_second"], slow["samples_per_second"]),
        ("latency_p50_ms", fast["latency_ms"]["p50"], slow["latency_ms"]["p50"]),
        ("latency_p99_ms", fast["latency_ms"]["p99"], slow["latency_ms"]["p99"]),
        ("stage_handback_total_ms", *(s["timing"]["stages"]["handback"]["total_ms"] for s in (fast, slow))),
    ):
        row = by_metric[metric]
        assert (row["baseline"], row["value"], row["run"]) == (a, b, runs["slow"].name)
        assert row["delta"] == pytest.approx(b - a)
        assert row["delta_pct"] == pytest.approx(100 * (b - a) / a, abs=0.01)
    assert by_metric["latency_p50_ms"]["delta"] > 0  # 200 ms calls against 2 ms calls
    assert len(rows) == len(doc["rows"])
    results, _ = _table(out, "results")
    assert [r["run"] for r in results] == [runs["fast"].name, runs["slow"].name]


def test_quality_cost_energy_and_contact_sheet(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "q"
    md = write_report([runs["scored"]], out)[0].read_text()
    rows, _ = _table(out, "quality_by_category")
    assert {(r["category"], float(r["clip_score"]), int(r["count"])) for r in rows} == {
        ("animals", 32.25, 2),
        ("food", 30.75, 2),
        ("city", 31.5, 2),
    }
    accuracy, _ = _table(out, "accuracy")
    assert (accuracy[0]["clip_score"], accuracy[0]["fid_score"], accuracy[0]["verdict"]) == ("31.5", "23.4", "PASS")
    lpips = [(r["category"], r["prompt"], r["lpips_diversity"], r["seeds"]) for r in _table(out, "lpips_diversity")[0]]
    assert lpips == [
        ("animals", "a red fox in snow", "0.5", "3"),
        ("food", "a bowl of ramen", "0.325", "3"),
        ("(all)", "", "0.4125", "3"),
    ]
    cost = {r["metric"]: r["value"] for r in _table(out, "cost")[0]}
    assert cost["usd_per_image"] == "0.0125"
    energy = {r["metric"]: r["value"] for r in _table(out, "energy")[0]}
    assert energy == {"joules_per_image": "123.0", "source": "nvml"}
    assert _table(out, "results")[0][0]["first_image_cold_s"] == "1.75"
    assert "## Cost and energy" in md and "## Quality" in md
    # Images grouped by the categories of the run's prompt pack (sample index i = prompt i).
    (run,) = collect([runs["scored"]])
    mapping, note = categories(run)
    assert note == "" and [mapping[i] for i, _ in run.images] == PACK_CATEGORIES
    assert (out / "figures" / "contact_sheet_1.png").stat().st_size > 1000
    assert (out / "figures" / "diversity_sheet_1.png").stat().st_size > 1000  # one row per prompt, a column per seed


def test_contact_sheet_without_the_prompt_pack(runs: dict[str, Path], tmp_path: Path) -> None:
    (run,) = collect([runs["accuracy"]])
    run.manifest["prompts"]["source"] = str(tmp_path / "gone.toml")
    mapping, note = categories(run)
    assert mapping == {} and "gone.toml is gone" in note
    run.manifest["prompts"]["source"] = str(ROOT / "configs" / "prompts" / "default.toml")
    assert "changed since the run" in categories(run)[1]


def test_sweep_dir(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    md = write_report([runs["sweep"]], out)[0].read_text()
    speed, doc = _table(out, "sweep_speed")
    assert doc["columns"][:8] == [
        "run",
        "resolution",
        "steps",
        "batch_size",
        "scenario",
        "seconds_per_image",
        "images_per_second",
        "latency_p50_ms",
    ]
    assert len(speed) == 6 and speed[0]["seconds_per_image"] == "0.125"
    ramp, _ = _table(out, "sweep_ramp")
    assert [r["batch_size"] for r in ramp if r["best"] == "True"] == ["4"]
    steps = {(r["resolution"], r["steps"]): r for r in _table(out, "sweep_steps_quality")[1]["rows"]}
    assert steps[(128, 8)]["clip_score"] == 31.75 and steps[(128, 8)]["seconds_per_image"] == 0.8
    assert len(_table(out, "sweep_quality_by_category")[0]) == 4
    (quality,) = _table(out, "sweep_quality")[0]
    assert (quality["lpips_diversity"], quality["accepted_share"]) == ("0.4125", "0.75")
    # from the sweep's own runs: the quality run's images and LPIPS, the SingleStream run's latencies
    assert [r["category"] for r in _table(out, "sweep_lpips_diversity")[0]] == ["animals", "food", "(all)"]
    assert "64 px, 4 steps: images by category" in md
    for fig in (
        "sweep_throughput_vs_batch",
        "sweep_time_vs_resolution",
        "sweep_contact_sheet_1",
        "sweep_latency_distribution",
    ):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
    head = md.split("## ", 1)[0]
    assert "CUDA out of memory at batch 4" in head  # the failed point is called out


def test_scale_and_compare_dirs(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sc"
    md = write_report([runs["scale"], runs["compare"]], out)[0].read_text()
    scale, _ = _table(out, "scale")
    assert [(r["workers"], r["samples_per_second"]) for r in scale] == [("1", "10.0"), ("2", "18.0")]
    assert "scale point scenario=Offline, workers=2: LoadGen result INVALID" in md.split("## ", 1)[0]
    compare, _ = _table(out, "compare")
    assert [r["backend"] for r in compare] == ["fake", "slow-fake"]
    assert compare[0]["speedup"] == "1.0" and float(compare[1]["speedup"]) < 1.0
    assert float(compare[0]["samples_per_second"]) == _summary(runs["fast"])["samples_per_second"]
    for fig in ("scale_throughput", "compare_throughput"):
        assert (out / "figures" / f"{fig}.png").is_file()


def test_exports_have_the_documented_columns(runs: dict[str, Path], tmp_path: Path) -> None:
    """Every exported table parses as CSV and JSON with the same columns, and docs/reports.md documents them."""
    out = tmp_path / "all"
    inputs = [runs[k] for k in ("scored", "fast", "failed", "sweep", "scale", "compare")]
    write_report(inputs, out)
    doc = (ROOT / "docs" / "reports.md").read_text()
    section = doc.split("## Reports and exports", 1)[1].split("\n## ", 1)[0]
    names = sorted(p.stem for p in (out / "tables").glob("*.json"))
    assert set(names) >= {"conditions", "results", "queueing", "stages", "comparison", "problems", "sweep_speed"}
    for name in names:
        rows, doc = _table(out, name)
        with (out / "tables" / f"{name}.csv").open(newline="") as f:
            header = next(csv.reader(f))
        assert header == doc["columns"] and doc["table"] == name
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c) for c in header), header
        assert len(rows) == len(doc["rows"]) > 0
        assert all(list(r) == header for r in doc["rows"])
        documented = re.search(rf"^\| `{name}` \|[^|]*\|(.*)\|$", section, re.M)
        assert documented, f"docs/reports.md 'Reports and exports' does not list table {name}"
        assert re.findall(r"`([a-z0-9_]+)`", documented.group(1)) == header, name


def test_several_inputs_default_to_reports_timestamp(runs: dict[str, Path], tmp_path: Path) -> None:
    proc = _cli(str(runs["fast"]), str(runs["sweep"]), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (out,) = (tmp_path / "reports").iterdir()
    assert re.fullmatch(r"\d{8}-\d{6}", out.name)
    assert (out / "report.md").is_file() and (out / "report.html").is_file()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "holds none of sweep.json, scale.json, compare.json, summary.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, make, message: str) -> None:
    proc = _cli(str(make(tmp_path)), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: report: ") and message in proc.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(HarnessError, match=message):
        build_document(collect([make(tmp_path)]))


def test_a_report_written_again_replaces_the_last_one(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "again"
    write_report([runs["fast"], runs["sweep"]], out)
    assert (out / "tables" / "sweep_speed.csv").is_file() and (
        out / "figures" / "sweep_time_vs_resolution.png"
    ).is_file()
    write_report([runs["fast"]], out)
    assert not (out / "tables" / "sweep_speed.csv").exists() and not (out / "tables" / "sweep_speed.json").exists()
    assert not (out / "figures" / "sweep_time_vs_resolution.png").exists()
    assert (out / "tables" / "results.csv").is_file()
    (out / "notes.txt").write_text("mine")  # anything else in the folder is left alone
    write_report([runs["fast"]], out)
    assert (out / "notes.txt").read_text() == "mine"


def test_invalid_sweep_points_and_stand_in_scorers_are_called_out(runs: dict[str, Path], tmp_path: Path) -> None:
    from harness.report import plots
    from harness.report.collect import DirData

    sweep = shutil.copytree(runs["sweep"], tmp_path / "invalid-sweep")
    doc = json.loads((sweep / "sweep.json").read_text())
    for row in doc["rows"]:
        row.update(loadgen_validity="VALID", invalid_reason=None)
    reason = "early stopping not met: Would need to run at least 319 more queries"
    doc["rows"][1].update(loadgen_validity="INVALID", invalid_reason=reason)
    doc["ramp"][1].update(loadgen_validity="INVALID", invalid_reason="Increase expected QPS")
    doc["quality"][0]["standin"] = True
    (sweep / "sweep.json").write_text(json.dumps(doc))
    md = write_report([sweep], tmp_path / "out")[0].read_text()
    head = md.split("## ", 1)[0]
    assert (
        f"sweep point resolution=64, steps=8, batch_size=1, scenario=Offline: LoadGen result INVALID: {reason}" in head
    )
    assert "STAND-IN scorer files" in head and "no LoadGen result is INVALID" not in md
    speed, table = _table(tmp_path / "out", "sweep_speed")
    assert len(table["columns"]) <= 14 and "loadgen_validity" in table["columns"]
    assert [r["loadgen_validity"] for r in speed].count("INVALID") == 1
    assert next(r for r in speed if r["loadgen_validity"] == "INVALID")["invalid_reason"] == reason
    assert "batch ramp point resolution=64, steps=4, batch_size=2: LoadGen result INVALID" in head
    # The charts draw the INVALID points differently from the same sweep with every point VALID.
    valid = json.loads(json.dumps(doc))
    valid["rows"][1].update(loadgen_validity="VALID", invalid_reason=None)
    valid["ramp"][1].update(loadgen_validity="VALID", invalid_reason=None)
    for chart in (plots.sweep_throughput_vs_batch, plots.sweep_time_vs_resolution):
        drawn = [chart([DirData("sweep", "s", sweep, d)]) for d in (doc, valid)]
        assert drawn[0] and drawn[1] and drawn[0] != drawn[1], chart.__name__


def test_a_report_of_several_runs_keeps_the_run_column(runs: dict[str, Path], tmp_path: Path) -> None:
    md = write_report([runs["fast"], runs["scored"]], tmp_path / "out")[0].read_text()
    accuracy = md.split("### Accuracy (CLIP score, FID)", 1)[1].split("###", 1)[0]
    assert "| run | clip_score |" in accuracy  # only the scored run has accuracy figures: still traced


def test_time_to_first_image_is_figures_and_no_energy_section_without_data(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    summary = _summary(runs["fast"])
    assert summary["energy"].get("available") is False  # the fake backend on a CPU: no NVML
    out = tmp_path / "out"
    md = write_report([runs["fast"]], out)[0].read_text()
    assert "### Energy" not in md and not (out / "tables" / "energy.csv").exists()
    (row,) = _table(out, "results")[0]
    assert float(row["first_image_cold_s"]) == pytest.approx(summary["time_to_first_image_s"]["cold"], rel=1e-3)
    assert float(row["first_image_warm_s"]) == pytest.approx(summary["time_to_first_image_s"]["warm"], rel=1e-3)
    assert '"cold"' not in md and '"cold"' not in (out / "report.html").read_text()
    assert '"cold"' not in (out / "tables" / "results.csv").read_text()
