"""Run a finished run again under the same configuration: the arguments for `python -m harness` that
reproduce a run folder's `config.toml` (the fully resolved configuration it wrote).

    args = replay_args(run_dir, config_path=tmp / "replay.toml", output_dir=run_dir.parent)
    run_child(args, output_dir=run_dir.parent)

`config.toml` is not itself a `--config` file: it also holds what the layers resolved to (LoadGen's
settings as LoadGen used them, the `--set loadgen.*` overrides, the user.conf path). The replay writes the
sections back as a config file and passes the overrides as `--set`, so they stay after user.conf, where the
original run applied them. Used by `gate --confirm` to run a failing candidate once more.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.config import read_toml, to_toml
from harness.errors import ConfigError

# What config.toml records besides the config file's sections (run/benchmark.py: write_config).
_DERIVED = ("user_conf", "loadgen_overrides", "loadgen_resolved")


def replay_args(run_dir: Path, *, config_path: Path, output_dir: Path, history_url: str | None = None) -> list[str]:
    """`python -m harness` arguments for a run under `run_dir`'s configuration, into `output_dir`.

    `config_path` receives the config file (mode 0600: it may hold the history URL). `history_url`
    replaces the recorded one, whose password config.toml keeps only as ***. Raises ConfigError when the
    folder has no config.toml."""
    source = run_dir / "config.toml"
    if not source.is_file():
        raise ConfigError(f"{run_dir}: no config.toml, so the run cannot be repeated")
    tree: dict[str, Any] = read_toml(source)
    overrides = tree.get("loadgen_overrides", {}) or {}
    user_conf = str(tree.get("user_conf", "") or "")
    sections = {k: v for k, v in tree.items() if k not in _DERIVED}
    # config.toml's [loadgen] is already the chosen scenario's: back under [loadgen.<scenario>], so that it
    # wins over the model file's scenario table again
    scenario = str((sections.get("run", {}) or {}).get("scenario", "Offline"))
    loadgen: dict[str, Any] = {scenario: dict(sections.get("loadgen", {}) or {})}
    if user_conf:
        loadgen["user_conf"] = user_conf
    sections["loadgen"] = loadgen
    run = dict(sections.get("run", {}) or {})
    run["output_dir"] = str(output_dir)
    sections["run"] = run
    if history_url is not None:
        sections["history"] = {**(sections.get("history", {}) or {}), "url": history_url}
    config_path.write_text(to_toml(sections), encoding="utf-8")
    os.chmod(config_path, 0o600)
    model = str((sections.get("model", {}) or {}).get("name", "tiny"))
    args = ["--model", model, "--config", str(config_path), "--no-progress"]
    for key, value in overrides.items():
        args += ["--set", f"loadgen.{key}={_set_value(value)}"]
    return args


def _set_value(value: Any) -> str:
    """A `--set` value that parses back to the same type (config.parse_set reads TOML scalars)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return to_toml({"v": value}).split("=", 1)[1].strip()
    return repr(value)
