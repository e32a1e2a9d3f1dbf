"""Read what the report is about: run directories, and sweep, scale and compare directories.

A run directory holds summary.json (and manifest.json, config.toml, LoadGen's logs, images/ in accuracy
mode); a sweep directory sweep.json, a scale directory scale.json, a compare directory compare.json.
Anything else is bad input (HarnessError: one line on stderr, exit code 2).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.run.summary import RunSummary

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# The file that marks each kind of input directory, in the order they are looked for.
MARKERS = {"sweep": "sweep.json", "scale": "scale.json", "compare": "compare.json", "run": "summary.json"}

# LoadGen's trace (mlperf_log_trace.json) has one "Sample" begin event per sample with its issue and
# completion times in ns: the only per-sample latencies LoadGen writes.
_SAMPLE_EVENT = re.compile(r'"name":"Sample".*"ph":"b".*"issue_start_ns":(\d+),"complete_ns":(\d+)')


@dataclass
class RunData:
    label: str
    path: Path
    summary: RunSummary
    manifest: dict[str, Any]
    config: dict[str, Any]  # config.toml, the fully resolved configuration
    accuracy: dict[str, Any]  # accuracy.json, else summary.accuracy, else {}
    latencies_ms: list[float] = field(default_factory=list)  # per sample, from the trace; [] when absent
    images: list[tuple[int, Path]] = field(default_factory=list)  # (sample index, PNG) from images/

    @property
    def kind(self) -> str:
        return "run"


@dataclass
class DirData:
    """A sweep, scale or compare directory: its JSON document as written."""

    kind: str  # sweep, scale or compare
    label: str
    path: Path
    data: dict[str, Any]


Input = RunData | DirData


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"report: cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise HarnessError(f"report: {path} should hold a JSON object, got {type(data).__name__}")
    return data


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HarnessError(f"report: cannot read {path}: {exc}") from exc


def trace_latencies_ms(path: Path) -> list[float]:
    """Per-sample latencies (completion - issue) from LoadGen's trace; [] when there is no trace."""
    if not path.is_file():
        return []
    out: list[float] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"Sample"' not in line:
                continue
            m = _SAMPLE_EVENT.search(line)
            if m:
                out.append((int(m.group(2)) - int(m.group(1))) / 1e6)
    return out


def sut_latencies_ms(path: Path) -> list[float]:
    """Per-sample latencies the SUT measured (issue_queries to QuerySamplesComplete), sample_latencies.csv;
    [] when the run has none (runs made before the file existed)."""
    if not path.is_file():
        return []
    out: list[float] = []
    with path.open(encoding="utf-8") as f:
        next(f, None)
        for line in f:
            try:
                out.append(float(line.rsplit(",", 1)[1]))
            except (IndexError, ValueError):
                continue
    return out


def load_run(path: Path, label: str) -> RunData:
    summary = RunSummary.from_json(_read_json(path / "summary.json"))
    manifest = _read_json(path / "manifest.json") if (path / "manifest.json").is_file() else {}
    accuracy = _read_json(path / "accuracy.json") if (path / "accuracy.json").is_file() else {}
    if not accuracy and summary.accuracy:
        accuracy = dict(summary.accuracy)
    images = []
    for png in sorted((path / "images").glob("sample_*.png")):
        try:
            images.append((int(png.stem.removeprefix("sample_")), png))
        except ValueError:
            continue
    return RunData(
        label=label,
        path=path,
        summary=summary,
        manifest=manifest,
        config=_read_toml(path / "config.toml"),
        accuracy=accuracy,
        latencies_ms=trace_latencies_ms(path / "mlperf_log_trace.json")
        or sut_latencies_ms(path / "sample_latencies.csv"),
        images=images,
    )


def kind_of(path: Path) -> str:
    if not path.exists():
        raise HarnessError(f"report: {path} does not exist")
    if not path.is_dir():
        raise HarnessError(f"report: {path} is not a directory; pass a run, sweep, scale or compare directory")
    for kind, marker in MARKERS.items():
        if (path / marker).is_file():
            return kind
    raise HarnessError(
        f"report: {path} holds none of {', '.join(MARKERS.values())}; pass a run, sweep, scale or compare directory"
    )


def _labels(paths: list[Path]) -> list[str]:
    """Each input's directory name, with #2, #3 ... where two inputs share a name."""
    counts: Counter[str] = Counter()
    labels = []
    for p in paths:
        counts[p.name] += 1
        labels.append(p.name if counts[p.name] == 1 else f"{p.name}#{counts[p.name]}")
    return labels


def collect(paths: list[Path]) -> list[Input]:
    """Load every input; the first bad one raises HarnessError before anything is written."""
    if not paths:
        raise HarnessError("report: no input directories given")
    resolved = [Path(p).expanduser().resolve() for p in paths]
    kinds = [kind_of(p) for p in resolved]
    inputs: list[Input] = []
    for path, kind, label in zip(resolved, kinds, _labels(resolved), strict=True):
        if kind == "run":
            inputs.append(load_run(path, label))
        else:
            inputs.append(DirData(kind, label, path, _read_json(path / MARKERS[kind])))
    return inputs
