"""Ray actors as workers: a local Ray instance on the CPU with two actors on the tiny model."""

from __future__ import annotations

import pytest

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


@pytest.mark.parametrize("scenario", ["SingleStream", "Offline", "Server"])
def test_two_ray_actors_run_the_tiny_model(run_cli, scenario: str) -> None:
    run = run_cli("--scenario", scenario, *QUICK)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    assert summary["status"] == "ok" and summary["loadgen"]["errors"] == []
    assert {w["name"] for w in summary["workers"]} <= {"ray-worker-0", "ray-worker-1"}
    assert sum(w["samples"] for w in summary["workers"]) == summary["samples_completed"] > 0
    # the tiny model's prompts were tokenized by an actor when LoadGen loaded them, not in timed calls
    assert summary["harness"]["pretokenized_samples"] > 0


def test_a_dying_ray_actor_ends_the_run(run_cli) -> None:
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
