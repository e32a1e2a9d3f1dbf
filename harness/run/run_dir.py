"""The run directory: runs/<time>-<model>-<backend>-<scenario>-<mode>/ and the files the harness
writes into it (LoadGen writes its own logs there too)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from harness.config import RunConfig, to_toml


def make_run_dir(cfg: RunConfig, label: str = "", command: str = "") -> Path:
    """<output_dir>/<time>-<model>-<backend>-<scenario>-<label, default the mode>, never an existing one;
    a command that runs no scenario (fit) puts its name in place of <scenario>-<label>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    r = cfg.run
    tail = command or f"{r.scenario}-{label or r.mode}"
    base = Path(r.output_dir) / f"{stamp}-{cfg.model.name}-{r.backend}-{tail}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a file, even after Ctrl-C


def write_config(path: Path, cfg: RunConfig, loadgen_settings: dict[str, Any]) -> None:
    data = cfg.to_dict()
    data["loadgen_resolved"] = loadgen_settings
    header = "# The fully resolved configuration of this run (LoadGen settings as LoadGen used them).\n"
    path.write_text(header + to_toml(data), encoding="utf-8")
