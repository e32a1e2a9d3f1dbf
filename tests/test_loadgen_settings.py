"""TestSettings come from mlperf.conf, then the TOML layers, then user.conf, then --set; any
deviation from the MLPerf rules makes a run not valid for submission."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import resolve_config
from harness.errors import ConfigError
from harness.loadgen.settings import build_test_settings, embedded_seeds, submission_blockers
from harness.mlperf import rules

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_uses_its_development_settings_and_the_official_seeds() -> None:
    cfg = resolve_config("tiny", cli={"run.scenario": "Offline"})
    s = build_test_settings(cfg)
    assert s.min_duration_ms == cfg.loadgen["min_duration_ms"]
    assert s.min_query_count == cfg.loadgen["min_query_count"]
    assert s.qsl_rng_seed != 0  # the seeds of LoadGen's embedded mlperf.conf
    blockers = submission_blockers(cfg, s, 64)
    assert any("development model" in b for b in blockers)


def test_sdxl_gets_the_mlperf_rules_and_is_clean_when_untouched() -> None:
    cfg = resolve_config("sdxl", cli={"run.scenario": "Offline"}, sets=["mlperf.round=v6.0"])
    s = build_test_settings(cfg)
    assert s.min_duration_ms == 600000
    assert s.min_query_count == 5000
    assert s.performance_sample_count_override == 5000
    assert submission_blockers(cfg, s, 5000) == []


@pytest.mark.parametrize("round_name", sorted(rules.ROUNDS))
def test_a_run_for_a_round_gets_that_rounds_seeds_without_seed_flags(round_name: str) -> None:
    """The installed wheel embeds one round's seeds; `mlperf.round` gives LoadGen the chosen round's."""
    cfg = resolve_config("sdxl", cli={"run.scenario": "Offline"}, sets=[f"mlperf.round={round_name}"])
    s = build_test_settings(cfg)
    assert (s.qsl_rng_seed, s.sample_index_rng_seed, s.schedule_rng_seed) == rules.ROUNDS[round_name].seeds
    assert submission_blockers(cfg, s, 5000) == []
    # The other round's seeds, set by hand, depart from this round's rules.
    other = next(r for r in rules.ROUNDS.values() if r.name != round_name)
    by_hand = [f"loadgen.{k}={v}" for k, v in zip(rules.SEED_KEYS, other.seeds, strict=True)]
    cfg = resolve_config("sdxl", cli={"run.scenario": "Offline"}, sets=[f"mlperf.round={round_name}", *by_hand])
    assert any("qsl_rng_seed" in b for b in submission_blockers(cfg, build_test_settings(cfg), 5000))


def test_a_run_for_no_round_is_not_a_submission_candidate() -> None:
    cfg = resolve_config("sdxl", cli={"run.scenario": "Offline"})
    s = build_test_settings(cfg)
    assert (s.qsl_rng_seed, s.sample_index_rng_seed, s.schedule_rng_seed) == embedded_seeds()
    (blocker,) = submission_blockers(cfg, s, 5000)
    assert blocker.startswith("made for no MLPerf round") and rules.round_of_seeds(embedded_seeds()) in blocker


def test_seed_lines_in_a_user_conf_are_refused(tmp_path: Path) -> None:
    """LoadGen reads seeds only from its built-in mlperf.conf; a user.conf seed line would be ignored."""
    conf = tmp_path / "user.conf"
    conf.write_text("# seeds\n*.Offline.min_query_count = 8\nstable-diffusion-xl.*.qsl_rng_seed = 1\n")
    cfg = resolve_config("sdxl", cli={"run.scenario": "Offline", "loadgen.user_conf": str(conf)})
    with pytest.raises(ConfigError, match=r"line 3 sets qsl_rng_seed, which LoadGen ignores in a user.conf"):
        build_test_settings(cfg)  # refused before LoadGen reads the file
    conf.write_text("# *.*.qsl_rng_seed = 1 is only a comment\n*.Offline.min_query_count = 8\n")
    assert _settings_in_a_child("sdxl", conf, [])["min_query_count"] == 8


@pytest.mark.parametrize(
    "backend, sets, departure",
    [
        ("fake", [], "backend 'fake' runs no model"),
        ("diffusers-eager", ["model.height=512", "model.width=512"], "model.height = 512"),
        ("diffusers-eager", ["model.steps=4"], "model.steps = 4"),
        ("diffusers-eager", ["model.guidance_scale=5.0"], "model.guidance_scale = 5.0"),
        ("diffusers-eager", ["model.negative_prompt=''"], "model.negative_prompt = ''"),
        ("diffusers-eager", ["latents.mode=per-sample"], "latents.mode = 'per-sample'"),
    ],
)
def test_every_departure_from_the_benchmark_blocks_submission(backend: str, sets: list[str], departure: str) -> None:
    cfg = resolve_config(
        "sdxl", cli={"run.scenario": "Offline", "run.backend": backend}, sets=["mlperf.round=v6.0", *sets]
    )
    blockers = submission_blockers(cfg, build_test_settings(cfg), 5000)
    assert len(blockers) == len(sets) or (not sets and len(blockers) == 1), blockers
    assert any(departure in b for b in blockers), blockers


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
    s = _settings_in_a_child("tiny", conf, ["loadgen.min_query_count=99"])
    assert s["offline_expected_qps"] == pytest.approx(3.5)  # user.conf over the TOML's 4.0... value
    assert s["min_query_count"] == 99  # --set over user.conf


def _settings_in_a_child(model: str, conf: Path, sets: list[str]) -> dict:
    """TestSettings built with a user.conf, in a child process: LoadGen counts user.conf loads per process
    and logs 'Multiple conf files are used' into the next run's detail log from the second one on, so a
    load here would end up in a later test's run."""
    code = (
        "import json, sys\n"
        "from harness.config import resolve_config\n"
        "from harness.loadgen.settings import build_test_settings\n"
        "cfg = resolve_config(sys.argv[1], cli={'run.scenario': 'Offline', 'loadgen.user_conf': sys.argv[2]},"
        " sets=sys.argv[3:])\n"
        "s = build_test_settings(cfg)\n"
        "print(json.dumps({k: getattr(s, k) for k in ('offline_expected_qps', 'min_query_count')}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, model, str(conf), *sets], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_unknown_or_mistyped_loadgen_settings_fail() -> None:
    with pytest.raises(ConfigError, match="unknown LoadGen setting"):
        build_test_settings(resolve_config("tiny", sets=["loadgen.min_durration_ms=5"]))
    with pytest.raises(ConfigError, match="loadgen.min_duration_ms' must be an integer"):
        build_test_settings(resolve_config("tiny", sets=["loadgen.min_duration_ms=fast"]))
