"""TestSettings come from mlperf.conf, then the TOML layers, then user.conf, then --set; any
deviation from the MLPerf rules makes a run not valid for submission."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import resolve_config
from harness.errors import ConfigError
from harness.loadgen_settings import build_test_settings, submission_blockers


def test_tiny_uses_its_development_settings_and_the_official_seeds() -> None:
    cfg = resolve_config("tiny", cli={"run.scenario": "Offline"})
    s = build_test_settings(cfg)
    assert s.min_duration_ms == cfg.loadgen["min_duration_ms"]
    assert s.min_query_count == cfg.loadgen["min_query_count"]
    assert s.qsl_rng_seed != 0  # the seeds of LoadGen's embedded mlperf.conf
    blockers = submission_blockers(cfg, s, 64)
    assert any("development model" in b for b in blockers)


def test_sdxl_gets_the_mlperf_rules_and_is_clean_when_untouched() -> None:
    cfg = resolve_config("sdxl", cli={"run.scenario": "Offline"})
    s = build_test_settings(cfg)
    assert s.min_duration_ms == 600000
    assert s.min_query_count == 5000
    assert s.performance_sample_count_override == 5000
    assert submission_blockers(cfg, s, 5000) == []


def test_server_latency_bound_is_20_s_for_sdxl() -> None:
    s = build_test_settings(resolve_config("sdxl", cli={"run.scenario": "Server"}))
    assert s.server_target_latency_ns == 20_000_000_000
    assert s.server_target_latency_percentile == pytest.approx(0.99)


def test_development_overrides_block_submission() -> None:
    cfg = resolve_config(
        "sdxl",
        cli={"run.scenario": "Offline"},
        sets=["loadgen.min_duration_ms=1000", "loadgen.min_query_count=10"],
    )
    blockers = submission_blockers(cfg, build_test_settings(cfg), 5000)
    assert any("min_duration_ms = 1000" in b for b in blockers)
    assert any("min_query_count = 10" in b for b in blockers)


def test_a_partial_dataset_blocks_submission() -> None:
    cfg = resolve_config("sdxl", cli={"run.scenario": "Offline"})
    assert any("dataset has 64 samples" in b for b in submission_blockers(cfg, build_test_settings(cfg), 64))


def test_user_conf_sits_between_toml_and_set(tmp_path: Path) -> None:
    conf = tmp_path / "user.conf"
    conf.write_text("*.Offline.target_qps = 3.5\n*.Offline.min_query_count = 77\n")
    cfg = resolve_config(
        "tiny",
        cli={"run.scenario": "Offline", "loadgen.user_conf": str(conf)},
        sets=["loadgen.min_query_count=99"],
    )
    s = build_test_settings(cfg)
    assert s.offline_expected_qps == pytest.approx(3.5)  # user.conf over the TOML's 4.0... value
    assert s.min_query_count == 99  # --set over user.conf


def test_unknown_or_mistyped_loadgen_settings_fail() -> None:
    with pytest.raises(ConfigError, match="unknown LoadGen setting"):
        build_test_settings(resolve_config("tiny", sets=["loadgen.min_durration_ms=5"]))
    with pytest.raises(ConfigError, match="loadgen.min_duration_ms' must be an integer"):
        build_test_settings(resolve_config("tiny", sets=["loadgen.min_duration_ms=fast"]))
