"""Side-by-side comparison of backends: image parity, reading finished runs, compare.md/.json/.png.

`python -m harness compare` (harness/commands/compare.py) runs each backend in its own process; this
module only reads what those runs wrote and reports it. Parity is measured on the uint8 images
LoadGen logged in accuracy-mode runs (`mlperf_log_accuracy.json`), against the reference backend
(diffusers-eager by default): the largest and the mean absolute difference in uint8 steps, and PSNR.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.console import fmt
from harness.run.summary import RunSummary
from harness.studies.rows import CompareResult

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

SCHEMA = "compare/1"


@dataclass(frozen=True)
class Parity:
    """How far `other` is from `reference`, over every pixel and channel of the compared images."""

    samples: int
    max_abs_diff: int  # uint8 steps
    mean_abs_diff: float
    psnr_db: float | None  # None when the images are identical (infinite PSNR)
    differing_fraction: float  # of all values

    @property
    def identical(self) -> bool:
        return self.max_abs_diff == 0

    def describe(self) -> str:
        psnr = "identical" if self.psnr_db is None else f"PSNR {self.psnr_db:.1f} dB"
        return f"max {self.max_abs_diff}, mean {self.mean_abs_diff:.3g} (uint8), {psnr}, {self.samples} images"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "identical": self.identical}


def image_parity(reference: np.ndarray, other: np.ndarray) -> Parity:
    """Parity of two uint8 image arrays of the same shape ((N,) H, W, 3)."""
    if reference.shape != other.shape:
        raise ValueError(f"image parity: shapes differ, {reference.shape} against {other.shape}")
    if reference.dtype != np.uint8 or other.dtype != np.uint8:
        raise ValueError(f"image parity: images must be uint8, got {reference.dtype} and {other.dtype}")
    diff = np.abs(reference.astype(np.int16) - other.astype(np.int16))
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return Parity(
        samples=int(reference.shape[0]) if reference.ndim == 4 else 1,
        max_abs_diff=int(diff.max()) if diff.size else 0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        psnr_db=None if mse == 0 else 10 * math.log10(255.0**2 / mse),
        differing_fraction=float(np.count_nonzero(diff)) / diff.size if diff.size else 0.0,
    )


def logged_images(run_dir: Path) -> dict[int, np.ndarray]:
    """The images an accuracy-mode run logged, by sample index (the first entry of each)."""
    height, width = _image_size(run_dir)
    entries = json.loads((run_dir / "mlperf_log_accuracy.json").read_text(encoding="utf-8"))
    images: dict[int, np.ndarray] = {}
    for entry in entries:
        idx = int(entry["qsl_idx"])
        if idx in images or not entry.get("data"):
            continue
        raw = np.frombuffer(bytes.fromhex(entry["data"]), dtype=np.uint8)
        if raw.size != height * width * 3:
            raise ValueError(f"{run_dir}: sample {idx} logged {raw.size} bytes, expected {height} x {width} x 3")
        images[idx] = raw.reshape(height, width, 3)
    return images


def run_parity(reference_dir: Path, other_dir: Path) -> Parity:
    """Parity of two accuracy runs over the samples both logged."""
    ref, other = logged_images(reference_dir), logged_images(other_dir)
    common = sorted(set(ref) & set(other))
    if not common:
        raise ValueError(f"no sample was logged by both {reference_dir.name} and {other_dir.name}")
    return image_parity(np.stack([ref[i] for i in common]), np.stack([other[i] for i in common]))


def _image_size(run_dir: Path) -> tuple[int, int]:
    config = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    return int(config["model"]["height"]), int(config["model"]["width"])


# -- one backend's runs -> one row ----------------------------------------------------------------


def read_manifest(run_dir: Path | None) -> dict[str, Any]:
    """manifest.json of a run directory ({} when there is none); its summary.json is RunSummary.read_if_present."""
    path = run_dir / "manifest.json" if run_dir is not None else None
    if path is None or not path.is_file():
        return {}
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def setup_seconds(backend: dict[str, Any]) -> dict[str, float]:
    """What the backend reported spending before its first image: compile, ONNX export, sessions,
    engine builds (`build_s` in its describe()); {} for backends that prepare nothing (eager)."""
    build = backend.get("build_s") or {}
    return {str(k): float(v) for k, v in build.items() if v is not None}


def make_row(
    backend: str,
    perf_dir: Path | None,
    perf_exit: int | None,
    perf_error: str | None,
    accuracy_dir: Path | None,
) -> dict[str, Any]:
    """compare.json's entry for one backend (a CompareResult as a dict: compare adds to it)."""
    manifest = read_manifest(perf_dir)
    summary = RunSummary.read_if_present(perf_dir / "summary.json" if perf_dir else None)
    described = manifest.get("backend") or {}
    ok = perf_exit == 0 and summary is not None and summary.status == "ok"
    onnx = described.get("onnx") or {}
    latency = summary.latency_ms if summary is not None else {}
    return CompareResult(
        backend=backend,
        status="ok" if ok else "failed",
        error=None if ok else ((summary.error if summary else None) or perf_error or f"exit code {perf_exit}"),
        run_dir=str(perf_dir) if perf_dir else None,
        accuracy_run_dir=str(accuracy_dir) if accuracy_dir else None,
        samples_per_second=summary.samples_per_second if summary else None,
        latency_ms={k: latency.get(k) for k in ("p50", "p90", "p99")},
        loadgen_result=summary.loadgen.result_validity if summary else None,
        invalid_reason=(summary.verdict().reason or None) if summary else None,
        batch_sizes=dict(summary.batch_sizes) if summary else None,
        setup_s=setup_seconds(described),
        onnx_export_cached=onnx.get("cache_hit"),
        phases_s=dict(summary.phases_s) if summary else None,
        peak_memory=dict(summary.peak_memory) if summary else None,
        device=described.get("device"),
        dtype=described.get("dtype"),
        options=described.get("options"),
        compile=described.get("compile"),
        prompts_sha256=(manifest.get("prompts") or {}).get("sha256"),
        latents=manifest.get("latents"),
        timing=dict(summary.timing) if summary else None,
    ).to_json()


def build_report(
    rows: list[dict[str, Any]],
    *,
    reference: str,
    model: str,
    scenario: str,
    command: list[str],
    sets: list[str],
    host: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Speedups over the reference and a check that every run saw the same prompts and latents."""
    ref = next((r for r in rows if r["backend"] == reference), None)
    ref_sps = ref["samples_per_second"] if ref and ref["status"] == "ok" else None
    for r in rows:
        sps = r["samples_per_second"]
        r["speedup"] = round(sps / ref_sps, 3) if ref_sps and sps and r["status"] == "ok" else None
    inputs = {(r["prompts_sha256"], json.dumps(r["latents"], sort_keys=True)) for r in rows if r["status"] == "ok"}
    return {
        "schema": SCHEMA,
        "model": model,
        "scenario": scenario,
        "reference": reference,
        "command": command,
        "sets": sets,
        "host": host or {},
        "same_inputs": len(inputs) <= 1,
        "results": rows,
    }


# -- the report files ----------------------------------------------------------------------------


def _setup_text(row: dict[str, Any]) -> str:
    setup = row["setup_s"]
    if not setup:
        return "-"
    parts = [f"{k} {v:.1f}" for k, v in setup.items()]
    if row.get("onnx_export_cached"):
        parts = [p if not p.startswith("onnx_export") else "onnx_export cached" for p in parts]
    return ", ".join(parts)


def _validity_text(row: dict[str, Any]) -> str:
    validity = row.get("loadgen_result")
    return "**INVALID**" if validity == "INVALID" else fmt(validity)


def _parity_text(row: dict[str, Any], reference: str) -> str:
    if row["backend"] == reference:
        return "reference"
    parity = row.get("parity")
    if parity is None:
        return f"not measured ({row.get('parity_error') or 'no accuracy run'})"
    psnr = "identical" if parity["psnr_db"] is None else f"{parity['psnr_db']:.1f} dB"
    return f"{parity['max_abs_diff']} / {parity['mean_abs_diff']:.3g} / {psnr}"


def markdown(report: dict[str, Any]) -> str:
    ref = report["reference"]
    lines = [
        f"# Backend comparison: {report['model']}, {report['scenario']}",
        "",
        f"Reference: `{ref}`. Every backend ran in its own process on the same model, prompts and latents"
        + (
            "."
            if report["same_inputs"]
            else " -- **except that the runs did not see the same inputs** (see compare.json)."
        ),
        "",
        "| backend | samples/s | speedup | p50 ms | p90 ms | p99 ms | setup s | peak RSS MiB | peak CUDA MiB "
        "| parity max / mean / PSNR | LoadGen | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lat = r["latency_ms"]
        mem = r.get("peak_memory") or {}
        speedup = f"{r['speedup']:.2f}x" if r.get("speedup") is not None else "-"
        lines.append(
            f"| `{r['backend']}` | {fmt(r['samples_per_second'], 3)} | {speedup} | {fmt(lat.get('p50'), 1)} "
            f"| {fmt(lat.get('p90'), 1)} | {fmt(lat.get('p99'), 1)} | {_setup_text(r)} "
            f"| {fmt(mem.get('cpu_rss_mib'), 0)} | {fmt(mem.get('cuda_allocated_mib'), 0)} "
            f"| {_parity_text(r, ref)} | {_validity_text(r)} | {r['status']} |"
        )
    lines += [
        "",
        "- samples/s: LoadGen's result (Offline: samples per second; SingleStream and Server as LoadGen reports them).",
        "- setup s: what the backend reported spending before its first timed image (torch.compile compile time "
        "per warmed-up batch size summed, ONNX export and session creation, engine builds); eager prepares nothing.",
        "- peak RSS: the whole benchmark process, load and warm-up included (an ONNX export done in that run "
        "counts); peak CUDA: torch's allocator only.",
        "- parity: uint8 images of an accuracy-mode run of each backend against the reference's, over the "
        "samples both logged: largest and mean absolute difference, and PSNR.",
        "",
    ]
    lines += stage_table(report["results"])
    for r in report["results"]:
        rounds = [x.get("samples_per_second") for x in r.get("rounds") or []]
        if len(rounds) > 1:
            lines.append(
                f"- `{r['backend']}` samples/s by round: {', '.join(fmt(v, 3) for v in rounds)} (median shown)"
            )
        if r["status"] != "ok":
            lines.append(f"- `{r['backend']}` failed: {r['error']}")
        elif r.get("loadgen_result") == "INVALID":
            lines.append(f"- `{r['backend']}` LoadGen INVALID: {r.get('invalid_reason') or 'no reason recorded'}")
        lines.append(f"- `{r['backend']}` runs: {r['run_dir']} (performance), {r['accuracy_run_dir']} (accuracy)")
    return "\n".join(lines) + "\n"


def stage_table(rows: list[dict[str, Any]]) -> list[str]:
    """Where each backend's time went, side by side: mean ms per batch for each stage and per
    denoising step, and the share of the run spent outside the backend. Which part got faster."""
    timed = [r for r in rows if (r.get("timing") or {}).get("stages")]
    if not timed:
        return []
    stages: list[str] = []
    for r in timed:
        stages += [s for s in r["timing"]["stages"] if s not in stages]
    lines = [
        "## Where the time went (mean ms per batch)",
        "",
        "| stage | " + " | ".join(f"`{r['backend']}`" for r in timed) + " |",
        "|---|" + "---|" * len(timed),
    ]
    for stage in stages:
        cells = [fmt((r["timing"]["stages"].get(stage) or {}).get("mean_ms"), 2) for r in timed]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    steps = [fmt((r["timing"].get("steps") or {}).get("mean_ms"), 2) for r in timed]
    outside = [r["timing"].get("outside_backend_share") for r in timed]
    lines.append("| one denoising step | " + " | ".join(steps) + " |")
    lines.append(
        "| share of wall time outside the backend | "
        + " | ".join(f"{v:.1%}" if v is not None else "-" for v in outside)
        + " |"
    )
    lines += [
        "",
        "- stages as each backend reports them (backend.stage_timing): text_encode, denoise (all steps), "
        "vae_decode, to_uint8, and handback (the SUT returning the images to LoadGen). A backend without "
        "a stage shows '-'.",
        "",
    ]
    return lines


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Throughput (with the speedup over the reference) and p50 / p90 / p99 latency, per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    names = [r["backend"] for r in rows]
    x = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8.0, 2.6 * len(rows) + 3), 4.2))
    sps = [r["samples_per_second"] or 0.0 for r in rows]
    bars = ax1.bar(x, sps, color=["#4c72b0" if r["backend"] != report["reference"] else "#888888" for r in rows])
    for bar, r in zip(bars, rows, strict=True):
        label = f"{r['speedup']:.2f}x" if r.get("speedup") is not None else r["status"]
        if r.get("loadgen_result") == "INVALID":  # drawn hollow: its figure is not a LoadGen result
            bar.set_facecolor("none")
            bar.set_hatch("//")
            bar.set_edgecolor("#c44e52")
            label += " INVALID"
        ax1.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
    ax1.set_ylim(0, max([*sps, 1e-9]) * 1.15)  # room for the labels
    ax1.set_xticks(x, names, rotation=15)
    ax1.set_ylabel("samples / s")
    title = "throughput (speedup over " + report["reference"] + ")"
    if any(r.get("loadgen_result") == "INVALID" for r in rows):
        title += "\nhatched, hollow: LoadGen INVALID"
    ax1.set_title(title)
    width = 0.27
    for k, (key, color) in enumerate((("p50", "#55a868"), ("p90", "#dd8452"), ("p99", "#c44e52"))):
        values = [(r["latency_ms"] or {}).get(key) or 0.0 for r in rows]
        ax2.bar(x + (k - 1) * width, values, width, label=key, color=color)
    ax2.set_xticks(x, names, rotation=15)
    ax2.set_ylabel("latency, ms")
    ax2.set_title("latency percentiles (LoadGen)")
    ax2.legend()
    fig.suptitle(f"{report['model']} · {report['scenario']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
