"""Inputs -> Document: which sections, tables and figures a report has, in reading order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.report import dir_tables, plots, tables
from harness.report.collect import DirData, Input, RunData, load_run
from harness.report.contact_sheet import contact_sheet, diversity_sheet
from harness.report.document import Document, Figure, Section, Table
from harness.report.endpoint_section import endpoint_section
from harness.report.problems import problems


def _add(section: Section, table: Table) -> None:
    if table.rows:
        section.tables.append(table)


def _figure(section: Section, name: str, title: str, png: bytes | None, caption: str = "") -> None:
    if png is not None:
        section.figures.append(Figure(name, title, png, caption))


def _run_sections(runs: list[RunData]) -> list[Section]:
    conditions = Section("Test conditions")
    _add(conditions, tables.conditions(runs))

    results = Section("Results")
    for build in (tables.results, tables.queueing):
        _add(results, build(runs))
    _figure(
        results,
        "latency_distribution",
        "Latency distribution",
        plots.latency_cdf(runs),
        "per-sample latencies from LoadGen's trace (mlperf_log_trace.json, profile.loadgen_trace) where it "
        "has one, else the SUT's (sample_latencies.csv: issue to QuerySamplesComplete), else the percentiles "
        "of summary.json; performance runs that finished only.",
    )

    timing = Section("Where the time goes")
    _add(timing, tables.stages(runs))
    _add(timing, tables.steps(runs))

    money = Section("Cost and energy")
    _add(money, tables.key_values(runs, lambda s: s.cost, "cost", "Cost"))
    _add(money, tables.key_values(runs, lambda s: s.energy, "energy", "Energy"))

    quality = Section("Quality")
    _add(quality, tables.accuracy(runs))
    _add(quality, tables.by_category(runs))
    _add(quality, tables.lpips_by_category(runs))

    images = Section("Contact sheets")
    for i, r in enumerate(runs):
        png, note = contact_sheet(r)
        if note:
            images.notes.append(f"{r.label}: {note}")
        _figure(images, f"contact_sheet_{i + 1}", f"{r.label}: images by category", png)
        _figure(images, f"diversity_sheet_{i + 1}", f"{r.label}: same prompt, different seeds", diversity_sheet(r))

    endpoint = endpoint_section(runs)  # runs through the http backend only
    sections = [conditions, results, timing, *([endpoint] if endpoint else []), money, quality, images]
    if len(runs) > 1:
        compared = Section("Comparison")
        _add(compared, tables.comparison(runs))
        sections.append(compared)
    return sections


def _dir_sections(kind: str, dirs: list[DirData]) -> list[Section]:
    if kind == "sweep":
        speed = Section("Sweep: speed")
        _add(speed, dir_tables.sweep_speed(dirs))
        _add(speed, dir_tables.sweep_cost(dirs))
        _add(speed, dir_tables.sweep_ramp(dirs))
        _add(speed, dir_tables.sweep_fit(dirs))
        _figure(
            speed, "sweep_throughput_vs_batch", "Throughput against batch size", plots.sweep_throughput_vs_batch(dirs)
        )
        _figure(speed, "sweep_time_vs_resolution", "Time against resolution", plots.sweep_time_vs_resolution(dirs))
        children = sweep_runs(dirs)
        _figure(
            speed,
            "sweep_latency_distribution",
            "Latency distribution (SingleStream)",
            plots.latency_cdf(children["latency"]),
            "per-image latency of each resolution and step count, batch 1.",
        )
        quality = Section("Sweep: quality")
        _add(quality, dir_tables.sweep_steps_quality(dirs))
        _add(quality, dir_tables.sweep_quality(dirs))
        _add(quality, dir_tables.sweep_by_category(dirs))
        _add(quality, tables.lpips_by_category(children["quality"], "sweep_lpips_diversity"))
        for i, r in enumerate(children["quality"]):
            png, note = contact_sheet(r)
            if note:
                quality.notes.append(f"{r.label}: {note}")
            _figure(quality, f"sweep_contact_sheet_{i + 1}", f"{r.label}: images by category", png)
            seeds = diversity_sheet(r)
            _figure(quality, f"sweep_diversity_sheet_{i + 1}", f"{r.label}: same prompt, different seeds", seeds)
        return [speed, quality]
    if kind == "scale":
        section = Section("Scaling")
        _add(section, dir_tables.scale(dirs))
        _figure(section, "scale_throughput", "Throughput against worker count", plots.scale_throughput(dirs))
        return [section]
    section = Section("Backend comparison")
    _add(section, dir_tables.compare(dirs))
    _add(section, dir_tables.compare_stages(dirs))
    _figure(section, "compare_throughput", "Throughput by backend", plots.compare_throughput(dirs))
    return [section]


def sweep_runs(dirs: list[DirData]) -> dict[str, list[RunData]]:
    """The sweep's own runs the report draws from: SingleStream runs (latency distribution) and the
    quality runs (contact sheets, LPIPS), labelled by their point; runs that are gone are skipped."""
    out: dict[str, list[RunData]] = {"latency": [], "quality": []}
    for d in dirs:
        prefix = f"{d.label}: " if len(dirs) > 1 else ""
        picks = [("latency", r) for r in d.data.get("rows") or [] if r.get("scenario") == "SingleStream"]
        picks += [("quality", q) for q in d.data.get("quality") or []]
        for kind, point in picks:
            path = Path(point.get("run_dir") or "")
            if point.get("status") == "ok" and (path / "summary.json").is_file():
                label = f"{prefix}{point.get('resolution')} px, {point.get('steps')} steps"
                out[kind].append(load_run(path, label))
    return out


def _alert(row: dict[str, object]) -> str:
    return f"{row['run']}: {row['problem']}"


def build_document(inputs: list[Input]) -> Document:
    runs = [i for i in inputs if isinstance(i, RunData)]
    title = "Benchmark report" if len(inputs) > 1 else f"Benchmark report: {inputs[0].label}"
    doc = Document(title=title, inputs=[f"{i.label} ({i.kind}): {i.path}" for i in inputs])

    found = problems(inputs)
    overview = Section("Problems")
    if found.rows:
        doc.alerts = [_alert(r) for r in found.rows]
        overview.tables.append(found)
    else:
        overview.notes.append("none: every run finished, no LoadGen result is INVALID and no accuracy check failed.")
    doc.sections.append(overview)

    sections = _run_sections(runs) if runs else []
    for kind in ("sweep", "scale", "compare"):
        dirs = [i for i in inputs if isinstance(i, DirData) and i.kind == kind]
        if dirs:
            sections += _dir_sections(kind, dirs)
    doc.sections += [s for s in sections if not s.empty()]
    if len(inputs) == 1:
        for section in doc.sections:
            section.tables = [dataclasses.replace(t, single_input=True) for t in section.tables]
    return doc
