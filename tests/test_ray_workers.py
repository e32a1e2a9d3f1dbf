"""Ray actors as workers: a local Ray instance on the CPU with two actors on the tiny model."""

from __future__ import annotations

import re

import pytest

from harness.errors import ConfigError
from harness.workers.ray_actors import ray_log_level

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

QUICK = [
    "--set",
    "loadgen.min_duration_ms=1500",
    "--set",
    "loadgen.min_query_count=8",
    "--set",
    "loadgen.server_target_qps=20",
    "--set",
    "loadgen.offline_expected_qps=8",
    "--set",
    "workers.ray_address=local",
    "--set",
    "workers.count=2",
]
# A line of Ray's own Python logging ("<time>\tWARNING authentication_token_setup.py:85 -- ...").
RAY_LOG_LINE = re.compile(r"\t(DEBUG|INFO|WARNING) \S+\.py:\d+ -- ")


# SingleStream in the default run; Offline and Server (same actors, other batching) in the slow set.
@pytest.mark.parametrize(
    "scenario",
    ["SingleStream", pytest.param("Offline", marks=pytest.mark.slow), pytest.param("Server", marks=pytest.mark.slow)],
)
def test_two_ray_actors_run_the_tiny_model(run_cli_in_process, ray_once: None, scenario: str) -> None:
    # in this process: the first scenario starts Ray, the others join it (tests/conftest.py, ray_once)
    run = run_cli_in_process("--scenario", scenario, *QUICK)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    assert summary["status"] == "ok" and summary["loadgen"]["errors"] == []
    assert {w["name"] for w in summary["workers"]} <= {"ray-worker-0", "ray-worker-1"}
    assert sum(w["samples"] for w in summary["workers"]) == summary["samples_completed"] > 0
    # the tiny model's prompts were tokenized by an actor when LoadGen loaded them, not in timed calls
    assert summary["harness"]["pretokenized_samples"] > 0


@pytest.mark.slow  # 12 s; a dying worker process ends a run in the default set (test_worker_pool)
def test_a_dying_ray_actor_ends_the_run(run_cli) -> None:
    # a child process: LoadGen is still running when the run gives up, so the CLI exits the process hard
    run = run_cli(
        "--backend",
        "fake",
        "--scenario",
        "Server",
        *QUICK,
        "--set",
        "backend.latency_ms=5",
        "--set",
        "backend.exit_at_call=2",
        "--set",
        "backend.only_worker=ray-worker-0",
        "--set",
        "loadgen.min_duration_ms=60000",
        "--set",
        "sut.drain_timeout_s=2",
    )
    assert run.returncode == 1
    assert "ray-worker-0" in run.stderr and "WorkerDied" in run.stderr
    assert run.summary()["failure"]["worker"] == "ray-worker-0"


@pytest.mark.slow  # 11 s: a Ray start-up of its own; a Ray run stays in the default set
def test_ray_start_up_logs_stay_off_stderr(run_cli) -> None:
    # a child process: `python -m harness` starting Ray itself, its start-up logs on the child's stderr
    run = run_cli("--backend", "fake", "--scenario", "Offline", *QUICK, "--set", "workers.count=1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Ray: 1 actor(s) on CPUs" in run.stderr  # the harness's own line stays
    assert not RAY_LOG_LINE.findall(run.stderr), run.stderr[-3000:]


def test_ray_log_level_comes_from_the_value_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_RAY_LOG_LEVEL", raising=False)
    assert ray_log_level() == "ERROR"
    monkeypatch.setenv("HARNESS_RAY_LOG_LEVEL", "info")
    assert ray_log_level() == "INFO"
    assert ray_log_level("warning") == "WARNING"
    monkeypatch.setenv("HARNESS_RAY_LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError, match="HARNESS_RAY_LOG_LEVEL 'CHATTY' is not a log level; choose one of"):
        ray_log_level()
