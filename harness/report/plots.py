"""The report's plots as PNG bytes (matplotlib, Agg): latency distribution, sweep, scale and compare charts.

Each function returns None when there is nothing to draw.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.report.collect import DirData, RunData

PERCENTILE_POINTS = (("min", 0.0), ("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


@contextmanager
def _figure(width: float = 7.0, height: float = 4.0) -> Iterator[tuple[Any, Any, io.BytesIO]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    buf = io.BytesIO()
    try:
        yield fig, ax, buf
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plt.close(fig)


def latency_cdf(runs: list[RunData]) -> bytes | None:
    """Per-sample latency CDF of each finished performance run (LoadGen's trace), or its percentile points."""
    perf = [r for r in runs if r.summary.mode == "performance" and (r.latencies_ms or r.summary.latency_ms)]
    if not perf:
        return None
    with _figure() as (_, ax, buf):
        for r in perf:
            if len(r.latencies_ms) >= 2:
                xs = sorted(r.latencies_ms)
                ys = [(i + 1) / len(xs) for i in range(len(xs))]
                ax.step(xs, ys, where="post", label=f"{r.label} ({len(xs)} samples)")
            else:
                lat = r.summary.latency_ms
                pts = [(lat[k], q) for k, q in PERCENTILE_POINTS if lat.get(k) is not None]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{r.label} (percentiles)")
        ax.set(xlabel="latency, ms", ylabel="fraction of samples", title="latency distribution", ylim=(0, 1.02))
    return buf.getvalue()


INVALID_LABEL = "hollow: LoadGen INVALID (not a result)"


def _invalid(point: dict[str, Any]) -> bool:
    return point.get("loadgen_validity") == "INVALID"


def _hollow(ax: Any, xs: list[Any], ys: list[Any], color: str, labelled: list[bool]) -> None:
    """Large hollow markers over INVALID points, named once in the legend."""
    if not xs:
        return
    label = None if labelled[0] else INVALID_LABEL
    labelled[0] = True
    ax.plot(xs, ys, marker="o", markersize=11, markerfacecolor="white", markeredgecolor=color, linestyle="none")
    ax.plot(xs, ys, marker="x", markersize=6, color=color, linestyle="none", label=label)


def _lines(lines: list[tuple[str, list[tuple[Any, Any, bool]]]], **axes: str) -> bytes | None:
    """One marked line per (label, [(x, y, invalid), ...]), INVALID points hollow; None when there is none."""
    if not lines:
        return None
    with _figure() as (_, ax, buf):
        labelled = [False]
        for label, pts in lines:
            (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
            bad = [p for p in pts if p[2]]
            _hollow(ax, [p[0] for p in bad], [p[1] for p in bad], line.get_color(), labelled)
        ax.set(**axes)
    return buf.getvalue()


def _label(d: DirData, several: bool, text: str) -> str:
    return f"{d.label}: {text}" if several else text


def sweep_throughput_vs_batch(sweeps: list[DirData]) -> bytes | None:
    """Images per second against batch size, one line per resolution and step count; the best batch starred."""
    lines = []
    for d in sweeps:
        points = d.data.get("ramp") or d.data.get("rows") or []
        groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
        for p in points:
            if p.get("images_per_second") is not None and p.get("batch_size") is not None:
                groups.setdefault((p.get("resolution"), p.get("steps")), []).append(p)
        for (res, steps), pts in sorted(groups.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1] or 0)):
            lines.append(
                (_label(d, len(sweeps) > 1, f"{res} px, {steps} steps"), sorted(pts, key=lambda p: p["batch_size"]))
            )
    if not lines:
        return None
    with _figure() as (_, ax, buf):
        labelled = [False]
        for label, pts in lines:
            (line,) = ax.plot(
                [p["batch_size"] for p in pts], [p["images_per_second"] for p in pts], marker="o", label=label
            )
            bad = [p for p in pts if _invalid(p)]
            _hollow(
                ax, [p["batch_size"] for p in bad], [p["images_per_second"] for p in bad], line.get_color(), labelled
            )
            best = [p for p in pts if p.get("best")]
            if best:
                ax.plot(
                    [p["batch_size"] for p in best],
                    [p["images_per_second"] for p in best],
                    marker="*",
                    markersize=16,
                    linestyle="none",
                    color=line.get_color(),
                )
        ax.set(xlabel="batch size", ylabel="images / s", title="throughput against batch size (* best)")
        ax.set_xscale("log", base=2)
    return buf.getvalue()


def sweep_time_vs_resolution(sweeps: list[DirData]) -> bytes | None:
    """Seconds per image (the fastest batch size) against resolution, one line per step count."""
    lines = []
    for d in sweeps:
        best: dict[tuple[Any, Any], tuple[float, bool]] = {}
        for p in d.data.get("rows") or []:
            t = p.get("seconds_per_image")
            if t is None or p.get("resolution") is None:
                continue
            key = (p.get("steps"), p["resolution"])
            if key not in best or t < best[key][0]:
                best[key] = (t, _invalid(p))
        for steps in sorted({k[0] for k in best}, key=lambda s: s or 0):
            pts = sorted((res, t, bad) for (s, res), (t, bad) in best.items() if s == steps)
            lines.append((_label(d, len(sweeps) > 1, f"{steps} steps"), pts))
    return _lines(
        lines, xlabel="resolution, px (square side)", ylabel="seconds per image", title="time against resolution"
    )


def scale_throughput(dirs: list[DirData]) -> bytes | None:
    lines = []
    for d in dirs:
        rows = [r for r in d.data.get("rows") or [] if r.get("samples_per_second")]
        for scenario in sorted({r.get("scenario") for r in rows}):
            pts = sorted(
                (r["workers"], r["samples_per_second"], _invalid(r) or r.get("result_valid") is False)
                for r in rows
                if r.get("scenario") == scenario
            )
            lines.append((_label(d, len(dirs) > 1, str(scenario)), pts))
    return _lines(lines, xlabel="workers", ylabel="samples / s", title="throughput against worker count")


def compare_throughput(dirs: list[DirData]) -> bytes | None:
    bars = [
        (
            _label(d, len(dirs) > 1, str(r.get("backend"))),
            r.get("samples_per_second") or 0.0,
            r.get("loadgen_result") == "INVALID",
        )
        for d in dirs
        for r in d.data.get("results") or []
    ]
    if not bars:
        return None
    with _figure(max(6.0, 1.4 * len(bars) + 2), 4.0) as (_, ax, buf):
        drawn = ax.bar(range(len(bars)), [b[1] for b in bars], color="#4c72b0")
        for bar, (_, _, bad) in zip(drawn, bars, strict=True):
            if bad:  # hollow and hatched: its figure is not a LoadGen result
                bar.set(facecolor="none", hatch="//", edgecolor="#c44e52")
        if any(b[2] for b in bars):
            drawn[[b[2] for b in bars].index(True)].set_label("hatched, hollow: LoadGen INVALID")
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=15)
        ax.set(ylabel="samples / s", title="throughput by backend")
    return buf.getvalue()
