"""LoadGen TestSettings from the layered config, and whether the result could be submitted.

Order, lowest first:
1. LoadGen's embedded mlperf.conf for the model's MLPerf name (the official rules and seeds), then,
   when the run is made for a round (`--set mlperf.round=v6.0`), that round's seeds: each wheel embeds
   one round's seeds, and LoadGen reads seeds from nothing else;
2. the TOML layers: `[loadgen]` and `[loadgen.<Scenario>]` of the model config and `--config`;
3. a user.conf in LoadGen's own format (`--user-conf`), read by LoadGen itself;
4. `--set loadgen.<attribute>=value` overrides.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.config import RunConfig, check_value
from harness.errors import ConfigError
from harness.loadgen.module import lg, loadgen_build
from harness.mlperf import rules

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
    return loadgen_build().version  # the wheel's version, or VERSION.txt of the source-built LoadGen


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
    """TestSettings holding only the rules for this model and scenario: LoadGen's embedded mlperf.conf,
    with the seeds of the run's round (mlperf.round) where it names one."""
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, cfg.run.scenario)
    name = cfg.model.mlperf_name or DEV_MODEL_NAME
    if settings.FromConfig("", name, cfg.run.scenario, 0) != 0:
        raise ConfigError(f"LoadGen could not load its mlperf.conf for model {name!r}")
    if cfg.mlperf.round:
        for key, seed in zip(rules.SEED_KEYS, rules.ROUNDS[cfg.mlperf.round].seeds, strict=True):
            setattr(settings, key, seed)
    return settings


def embedded_seeds() -> tuple[int, int, int]:
    """The seeds of the installed wheel's built-in mlperf.conf."""
    settings = lg.TestSettings()
    settings.FromConfig("", DEV_MODEL_NAME, "Offline", 0)
    return (settings.qsl_rng_seed, settings.sample_index_rng_seed, settings.schedule_rng_seed)


_SEED_LINE = re.compile(r"^\s*[^#\s]*\.(qsl_rng_seed|sample_index_rng_seed|schedule_rng_seed)\s*=")


def check_user_conf_seeds(path: str) -> None:
    """LoadGen reads the RNG seeds from its built-in mlperf.conf only: FromConfig looks them up when
    conf_type == 0 (loadgen/test_settings_internal.cc, TestSettings::FromConfig), so a seed line in a
    user.conf is silently ignored. Refuse it rather than let the file claim what did not happen."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return  # LoadGen's own read reports a missing file
    for n, line in enumerate(lines, 1):
        m = _SEED_LINE.match(line)
        if m:
            raise ConfigError(
                f"user.conf {path!r} line {n} sets {m.group(1)}, which LoadGen ignores in a user.conf (it takes "
                f"seeds only from its built-in mlperf.conf); use --set mlperf.round={'|'.join(rules.ROUNDS)} "
                f"for a round's seeds, or --set loadgen.{m.group(1)}=N"
            )


def build_test_settings(cfg: RunConfig) -> lg.TestSettings:
    settings = mlperf_reference(cfg)
    settings.mode = lg.TestMode.AccuracyOnly if cfg.run.mode == "accuracy" else lg.TestMode.PerformanceOnly
    _apply(settings, cfg.loadgen, "[loadgen]")
    if cfg.user_conf:
        check_user_conf_seeds(cfg.user_conf)
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
    quantize = str(cfg.backend.get("quantize", "none"))
    if quantize != "none":
        blockers.append(
            f"the denoiser is quantized ({quantize}, backend.quantize): not valid for submission until an "
            "accuracy run with real weights and the same quantization passes the model's thresholds"
        )
    if not cfg.model.mlperf_name:
        blockers.append(f"model {cfg.model.name!r} has no MLPerf benchmark definition")
        return blockers
    blockers += benchmark_departures(cfg)
    if not cfg.mlperf.round:
        wheel = rules.round_of_seeds(embedded_seeds()) or "no known round's"
        blockers.append(
            f"made for no MLPerf round (mlperf.round is unset): LoadGen used its built-in seeds, {wheel}; "
            f"--set mlperf.round={'|'.join(rules.ROUNDS)} makes a run for a round"
        )
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


def benchmark_departures(cfg: RunConfig) -> list[str]:
    """Where the run is not the MLPerf SDXL benchmark (closed division): a backend that runs no model,
    a model section or latents other than the benchmark's. Random weights are the runner's blocker."""
    if cfg.model.mlperf_name != rules.BENCHMARK:
        return []
    out = []
    if cfg.run.backend == "fake":
        out.append("backend 'fake' runs no model: its images are synthetic and its timings are not inference")
    for key, need in rules.BENCHMARK_MODEL.items():
        have = getattr(cfg.model, key)
        if have != need:
            out.append(f"model.{key} = {have!r} (the {rules.BENCHMARK} benchmark: {need!r})")
    if cfg.latents.mode != rules.BENCHMARK_LATENTS_MODE:
        out.append(f"latents.mode = {cfg.latents.mode!r} (the benchmark: one shared latent for every prompt)")
    return out
