"""Time to first image: a run made after others in the same process does not count them as its cold
start (issue 22, point 5: TEST01's "cold" 96 s counted the accuracy and performance runs before it)."""

from __future__ import annotations

import time

import pytest

from harness.run import first_image


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(first_image, "_runs_done", 0)
    monkeypatch.setattr(first_image, "_run_start_unix_s", None)
    monkeypatch.setattr(first_image, "process_start_unix_s", lambda: time.time() - 100.0)


def test_the_first_run_counts_from_the_process_start(fresh_process: None) -> None:
    ttfi = first_image.time_to_first_image(time.time(), 0.5)
    assert ttfi["cold"] == pytest.approx(100.0, abs=1.0) and ttfi["cold_from"].startswith("process start")


def test_a_marked_later_run_counts_from_its_own_start(fresh_process: None) -> None:
    first_image.time_to_first_image(time.time(), 0.5)  # an earlier run of this process
    first_image.mark_run_start()
    ttfi = first_image.time_to_first_image(time.time() + 2.0, 0.5)
    assert ttfi["cold"] == pytest.approx(2.0, abs=0.5)  # not 100 s: the process start is long past
    assert ttfi["cold_from"].startswith("start of this run") and "run 2 of this process" in ttfi["cold_from"]


def test_an_unmarked_later_run_gets_no_cold_figure(fresh_process: None) -> None:
    first_image.time_to_first_image(time.time(), 0.5)
    ttfi = first_image.time_to_first_image(time.time(), 0.5)
    assert ttfi["cold"] is None and ttfi["cold_from"].startswith("not measured: run 2 of this process")
    assert ttfi["warm"] == 0.5
