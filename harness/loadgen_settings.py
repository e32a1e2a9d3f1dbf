"""LoadGen TestSettings from the layered config, and whether the result could be submitted.

Order, lowest first:
1. LoadGen's embedded mlperf.conf for the model's MLPerf name (the official rules and seeds);
2. the TOML layers: `[loadgen]` and `[loadgen.<Scenario>]` of the model config and `--config`;
3. a user.conf in LoadGen's own format (`--user-conf`), read by LoadGen itself;
4. `--set loadgen.<attribute>=value` overrides.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import mlperf_loadgen as lg

from harness.config import RunConfig, check_value
from harness.errors import ConfigError

# The model name LoadGen sees when a model has no MLPerf definition: only the `*.` rules apply.
DEV_MODEL_NAME = "harness-dev"

_NOT_SETTINGS = {"FromConfig", "mode", "scenario"}

# Settings the MLPerf rules fix. A run whose value differs from mlperf.conf's (in the direction
# given) is a development run, not a submission candidate.
_RULES: dict[str, str] = {
    "min_duration_ms": ">=",
    "min_query_count": ">=",
    "performance_sample_count_override": "==",
    "qsl_rng_seed": "==",
    "sample_index_rng_seed": "==",
    "schedule_rng_seed": "==",
    "server_target_latency_ns": "<=",
    "server_target_latency_percentile": "==",
    "single_stream_target_latency_percentile": "==",
    "max_duration_ms": "==",
    "max_query_count": "==",
    "performance_issue_same": "==",
    "performance_issue_unique": "==",
}


def setting_names() -> list[str]:
    return sorted(n for n in dir(lg.TestSettings()) if not n.startswith("_") and n not in _NOT_SETTINGS)


def loadgen_version() -> str:
    return importlib.metadata.version("mlcommons-loadgen")


def _apply(settings: lg.TestSettings, values: dict[str, Any], layer: str) -> None:
    names = setting_names()
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown LoadGen setting {layer}.{key!r}; allowed: {', '.join(names)}")
        current = getattr(settings, key)
        value = check_value(f"loadgen.{key}", value, type(current))
        try:
            setattr(settings, key, value)
        except TypeError as exc:  # e.g. a negative value for an unsigned field
            raise ConfigError(f"loadgen.{key} = {value!r} is not accepted by LoadGen: {exc}") from exc


def mlperf_reference(cfg: RunConfig) -> lg.TestSettings:
    """TestSettings holding only LoadGen's embedded mlperf.conf for this model and scenario."""
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, cfg.run.scenario)
    name = cfg.model.mlperf_name or DEV_MODEL_NAME
    if settings.FromConfig("", name, cfg.run.scenario, 0) != 0:
        raise ConfigError(f"LoadGen could not load its mlperf.conf for model {name!r}")
    return settings


def build_test_settings(cfg: RunConfig) -> lg.TestSettings:
    settings = mlperf_reference(cfg)
    settings.mode = lg.TestMode.AccuracyOnly if cfg.run.mode == "accuracy" else lg.TestMode.PerformanceOnly
    _apply(settings, cfg.loadgen, "[loadgen]")
    if cfg.user_conf:
        name = cfg.model.mlperf_name or DEV_MODEL_NAME
        if settings.FromConfig(cfg.user_conf, name, cfg.run.scenario, 1) != 0:
            raise ConfigError(f"LoadGen could not read user.conf {cfg.user_conf!r}")
    _apply(settings, cfg.loadgen_overrides, "--set loadgen")
    return settings


def settings_dict(settings: lg.TestSettings) -> dict[str, Any]:
    out: dict[str, Any] = {
        "scenario": settings.scenario.name,
        "mode": settings.mode.name,
    }
    for name in setting_names():
        out[name] = getattr(settings, name)
    return out


def submission_blockers(cfg: RunConfig, settings: lg.TestSettings, dataset_count: int) -> list[str]:
    """Why this run could not be an MLPerf submission result; empty when nothing stands in the way
    on the settings side (the result itself must also be VALID: the runner adds that)."""
    blockers: list[str] = []
    if cfg.model.development_only:
        blockers.append(f"model {cfg.model.name!r} is a development model")
    if not cfg.model.mlperf_name:
        blockers.append(f"model {cfg.model.name!r} has no MLPerf benchmark definition")
        return blockers
    reference = mlperf_reference(cfg)
    need = reference.performance_sample_count_override
    if need and dataset_count != need:
        blockers.append(f"dataset has {dataset_count} samples (MLPerf: {need})")
    for key, rule in _RULES.items():
        have, need = getattr(settings, key), getattr(reference, key)
        ok = {">=": have >= need, "<=": have <= need, "==": have == need}[rule]
        if not ok:
            blockers.append(f"loadgen.{key} = {have} (MLPerf rules: {rule} {need})")
    return blockers
