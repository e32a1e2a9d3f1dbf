"""Config layering: model TOML < --config < CLI flags < --set; unknown keys and wrong types fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.fake import FakeOptions
from harness.config import (
    RunConfig,
    build_options,
    parse_set,
    read_toml,
    resolve_config,
    to_toml,
)
from harness.errors import ConfigError


def test_model_defaults_then_file_then_cli_then_set(tmp_path: Path) -> None:
    base = resolve_config("tiny")
    assert base.model.steps == 8 and base.sut.batch_size == 8 and base.run.scenario == "Offline"

    layer = tmp_path / "layer.toml"
    layer.write_text('[model]\nsteps = 5\n[sut]\nbatch_size = 2\n[run]\nscenario = "Server"\n')
    cfg = resolve_config(
        "tiny",
        str(layer),
        {"run.scenario": "SingleStream", "model.path": None},
        ["sut.batch_size=3", "backend.device=cpu"],
    )
    assert cfg.model.steps == 5  # from the file
    assert cfg.run.scenario == "SingleStream"  # CLI flag over the file
    assert cfg.sut.batch_size == 3  # --set over everything
    assert cfg.backend == {"device": "cpu"}  # bare words are strings


def test_scenario_table_of_loadgen_settings_is_chosen() -> None:
    offline = resolve_config("tiny", cli={"run.scenario": "Offline"})
    server = resolve_config("tiny", cli={"run.scenario": "Server"})
    assert "server_target_qps" in server.loadgen and "server_target_qps" not in offline.loadgen
    assert offline.loadgen["min_duration_ms"] == server.loadgen["min_duration_ms"]  # shared key


def test_set_loadgen_goes_to_the_override_layer() -> None:
    cfg = resolve_config("tiny", sets=["loadgen.min_duration_ms=1234", "loadgen.user_conf=u.conf"])
    assert cfg.loadgen_overrides == {"min_duration_ms": 1234}
    assert cfg.user_conf == "u.conf"


@pytest.mark.parametrize(
    "item, message",
    [
        ("model.stepz=3", "unknown config key 'model.stepz'"),
        ("model.steps=many", "must be an integer"),
        ("model.steps=true", "must be an integer"),
        ("sut.max_wait_ms=fast", "must be a number"),
        ("nosection.key=1", "unknown config section 'nosection'"),
        ("run.scenario=MultiStream", "scenario 'MultiStream' is not allowed"),
        ("run.mode=fast", "mode 'fast' is not allowed"),
        ("latents.mode=each", "latents.mode 'each' is not allowed"),
        ("sut.batch_size=0", "sut.batch_size must be at least 1"),
        ("justakey", "--set expects section.key=value"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        resolve_config("tiny", sets=[item])


def test_unknown_model_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'; choose one of: .*tiny"):
        resolve_config("nope")


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config("tiny", str(tmp_path / "absent.toml"))


def test_backend_options_are_checked_against_the_backend() -> None:
    assert build_options(FakeOptions, {"latency_ms": 5}).latency_ms == 5.0  # int accepted as float
    with pytest.raises(ConfigError, match="unknown config key 'backend.sleep'.*latency_ms"):
        build_options(FakeOptions, {"sleep": 1})
    with pytest.raises(ConfigError, match="backend.fail_at_call' must be an integer"):
        build_options(FakeOptions, {"fail_at_call": "x"})


@settings(max_examples=60, deadline=None)
@given(
    steps=st.integers(1, 100),
    guidance=st.floats(0, 30, allow_nan=False),
    prompt=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
    progress=st.booleans(),
)
def test_resolved_config_round_trips_through_toml(
    tmp_path_factory: pytest.TempPathFactory, steps: int, guidance: float, prompt: str, progress: bool
) -> None:
    cfg = resolve_config(
        "tiny",
        sets=[f"model.steps={steps}", f"model.guidance_scale={guidance!r}", f"run.progress={str(progress).lower()}"],
    )
    cfg = RunConfig(**{**cfg.__dict__, "model": type(cfg.model)(**{**cfg.model.__dict__, "negative_prompt": prompt})})
    path = tmp_path_factory.mktemp("rt") / "config.toml"
    path.write_text(to_toml(cfg.to_dict()))
    back = read_toml(path)
    assert back == cfg.to_dict()


def test_parse_set_values_are_toml_typed() -> None:
    assert parse_set("a.b=3") == (["a", "b"], 3)
    assert parse_set("a.b=3.5") == (["a", "b"], 3.5)
    assert parse_set("a.b=true") == (["a", "b"], True)
    assert parse_set('a.b="x y"') == (["a", "b"], "x y")
    assert parse_set("a.b=cuda:0") == (["a", "b"], "cuda:0")


def test_a_model_configs_backend_options_do_not_break_other_backends() -> None:
    """sdxl.toml sets backend.device and backend.dtype for the backends that take them; the fake backend
    has neither, and `--model sdxl --backend fake` used to fail with "unknown config key 'backend.device'"."""
    cfg = resolve_config("sdxl", cli={"run.backend": "fake"})
    assert cfg.backend == {}
    build_options(FakeOptions, cfg.backend)  # what the runner builds the backend from
    assert resolve_config("sdxl").backend == {"device": "cuda", "dtype": "float16"}  # eager keeps them
    # What the user sets is still checked against the backend's options.
    given = resolve_config("sdxl", cli={"run.backend": "fake"}, sets=["backend.device=cuda"])
    with pytest.raises(ConfigError, match="unknown config key 'backend.device'"):
        build_options(FakeOptions, given.backend)


def test_the_mlperf_round_is_one_of_the_known_rounds() -> None:
    assert resolve_config("tiny").mlperf.round == ""
    assert resolve_config("tiny", sets=["mlperf.round=v6.1"]).mlperf.round == "v6.1"
    with pytest.raises(ConfigError, match=r"mlperf.round 'v5.1' is not allowed; choose one of: v6.0, v6.1"):
        resolve_config("tiny", sets=["mlperf.round=v5.1"])
