"""The table a finished run prints on the terminal (`run`, `compliance`): its figures, LoadGen's verdict, why
it is not valid for submission, and where the time went."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.console import fmt
from harness.run.summary import RunSummary


def print_summary(summary: RunSummary) -> None:
    console = Console()
    table = Table(
        title=f"{summary.model} · {summary.backend} · {summary.scenario} · {summary.mode}",
        show_header=False,
    )
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("status", summary.status)
    if summary.weights == "random":
        table.add_row("weights", "[bold yellow]RANDOM[/]: architecture-only run, images are noise")
    table.add_row("samples/s", fmt(summary.samples_per_second, 3))
    lat = summary.latency_ms
    if lat:
        table.add_row(
            "latency ms p50/p90/p95/p99/max",
            " / ".join(fmt(lat.get(k), 1) for k in ("p50", "p90", "p95", "p99", "max")),
        )
    table.add_row("batches (size: count)", ", ".join(f"{k}: {v}" for k, v in summary.batch_sizes.items()) or "-")
    queued = summary.harness.queue_delay_ms or {}
    if summary.scenario == "Server" and queued:  # what a Server user asks: waiting, or generating?
        batch = summary.harness.batch_time_ms or {}
        table.add_row(
            "queueing / generation ms p50/p99",
            f"{fmt(queued.get('p50'), 1)} / {fmt(queued.get('p99'), 1)} waiting in the SUT, "
            f"{fmt(batch.get('p50'), 1)} / {fmt(batch.get('p99'), 1)} per batch",
        )
    ttfi = summary.time_to_first_image_s or {}
    if ttfi.get("cold") is not None or ttfi.get("warm") is not None:
        table.add_row("time to first image s", f"cold {fmt(ttfi.get('cold'), 3)} / warm {fmt(ttfi.get('warm'), 3)}")
    table.add_row("peak memory MiB", _memory_line(summary.peak_memory or {}))
    energy = summary.energy or {}
    if energy.get("available"):
        table.add_row("energy", f"{fmt(energy['joules'], 1)} J, {fmt(energy['joules_per_image'], 3)} J/image")
    cost = summary.cost
    if cost:
        table.add_row("cost", _cost_line(cost))
    table.add_row("samples completed", str(summary.samples_completed))
    validity = summary.loadgen.result_validity
    reason = summary.loadgen.invalid_reason
    shown = "[bold red]INVALID[/]: not a result" + (f" ({reason})" if reason else "") if validity == "INVALID" else None
    table.add_row("LoadGen result", shown or fmt(validity))
    table.add_row("valid for submission", "yes" if summary.valid_for_submission else "no")
    for reason in summary.submission_blockers[:6]:
        table.add_row("", f"· {reason}")
    table.add_row("run directory", summary.run_dir)
    console.print(table)
    _print_stages(console, summary.timing or {})


def _memory_line(mem: Mapping[str, Any]) -> str:
    parts = []
    if mem.get("cuda_allocated_mib") is not None:
        reserved = fmt(mem.get("cuda_reserved_mib"), 0)
        parts.append(f"CUDA allocated {fmt(mem['cuda_allocated_mib'], 0)}, reserved {reserved}")
    if mem.get("cpu_rss_mib") is not None:
        parts.append(f"CPU RSS {fmt(mem['cpu_rss_mib'], 0)}")
    if mem.get("children_rss_mib") is not None:
        parts.append(f"worker processes RSS {fmt(mem['children_rss_mib'], 0)}")
    return ", ".join(parts) or "-"


def _cost_line(cost: Mapping[str, Any]) -> str:
    if cost.get("cost_per_image_usd") is None:
        return f"- ({cost.get('reason', 'no throughput')})"
    line = (
        f"${cost['cost_per_1000_images_usd']:.4f} per 1000 images, {cost['images_per_usd']:.1f} images/$ "
        f"(${cost['usd_per_device_hour']}/h x {cost['devices']}, {cost['throughput_from']})"
    )
    if cost.get("cost_per_accepted_image_usd") is not None:
        line += f"; ${1000 * cost['cost_per_accepted_image_usd']:.4f} per 1000 accepted"
    return line


def _print_stages(console: Console, timing: Mapping[str, Any]) -> None:
    """Where the time went: per-stage share and p50/p99 per batch, per-step latency."""
    stages = timing.get("stages") or {}
    if not stages:
        return
    total = sum(v["total_ms"] for v in stages.values()) or 1.0
    table = Table(title="where the time went (per batch)")
    for col in ("stage", "share", "p50 ms", "p99 ms"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, v in stages.items():
        table.add_row(name, f"{100 * v['total_ms'] / total:.1f}%", f"{v['p50_ms']:.2f}", f"{v['p99_ms']:.2f}")
    steps = timing.get("steps") or {}
    if steps.get("count"):
        table.add_row("one denoising step", "", f"{steps['p50_ms']:.2f}", f"{steps['p99_ms']:.2f}")
    share = timing.get("outside_backend_share")
    if share is not None:
        table.add_row("outside the backend", f"{100 * share:.1f}% of wall", "", "")
    console.print(table)
