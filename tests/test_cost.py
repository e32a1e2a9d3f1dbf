"""Cost per image from a price per device-hour and the measured throughput; time to first image."""

from __future__ import annotations

import pytest

from harness.config import CostSection
from harness.measure.cost import Throughput, cost_figures, device_count, hourly_price

OFFLINE = Throughput("Offline", samples_per_second=2.0, mean_latency_ms=9000.0)


def test_offline_cost_from_samples_per_second() -> None:
    cost = cost_figures(CostSection(gpu_hour_usd=3.6), OFFLINE)
    assert cost is not None
    # 3.6 USD/h = 0.001 USD/s; 2 images/s -> 0.0005 USD per image.
    assert cost["cost_per_image_usd"] == pytest.approx(0.0005)
    assert cost["cost_per_1000_images_usd"] == pytest.approx(0.5)
    assert cost["images_per_usd"] == pytest.approx(2000)
    assert cost["price_source"] == "cost.gpu_hour_usd" and cost["throughput_from"].startswith("Offline")
    assert cost["cost_per_accepted_image_usd"] is None and "acceptance" not in cost


def test_single_stream_uses_one_over_mean_latency_and_devices_multiply() -> None:
    summary = Throughput("SingleStream", samples_per_second=99.0, mean_latency_ms=500.0)
    cost = cost_figures(CostSection(gpu_hour_usd=3.6), summary, devices=2)
    assert cost is not None and cost["images_per_second"] == pytest.approx(2.0)
    assert cost["cost_per_image_usd"] == pytest.approx(2 * 0.001 / 2.0)
    assert "mean latency" in cost["throughput_from"]


def test_a_named_instance_gives_the_price() -> None:
    section = CostSection(gpu_hour_usd=1.0, instance="h100", instances={"h100": 7.2, "a10": 1.0})
    assert hourly_price(section) == (7.2, "cost.instances['h100']")
    assert cost_figures(CostSection(), OFFLINE) is None  # no price, no cost figures


def test_cost_per_accepted_image_from_per_image_clip_scores() -> None:
    section = CostSection(gpu_hour_usd=3.6, accept_clip_min=30.0)
    cost = cost_figures(section, OFFLINE, clip_scores=[31.0, 29.0, 30.0, 35.0])
    assert cost is not None
    assert cost["acceptance"]["accepted"] == 3 and cost["acceptance"]["accepted_share"] == 0.75
    assert cost["cost_per_accepted_image_usd"] == pytest.approx(0.0005 / 0.75)
    # Without per-image scores the share is unknown: no figure, and the reason.
    cost = cost_figures(section, OFFLINE)
    assert cost is not None and cost["cost_per_accepted_image_usd"] is None
    assert "per-image CLIP" in cost["acceptance"]["reason"]


def test_no_throughput_no_cost() -> None:
    cost = cost_figures(CostSection(gpu_hour_usd=2.0), Throughput("Offline", None, None))
    assert cost is not None and cost["cost_per_image_usd"] is None and "no throughput" in cost["reason"]


def test_devices_paid_for() -> None:
    assert device_count("cuda:0,cuda:1", "", 1) == 2
    assert device_count("", "auto", 4) == 4
    assert device_count("", "", 4) == 1  # a process pool on one machine shares its device


def test_a_run_reports_cost_and_time_to_first_image(run_cli) -> None:
    # a child process: the cold time to first image counts from the start of the process
    run = run_cli(
        "--backend",
        "fake",
        "--scenario",
        "Offline",
        "--set",
        "backend.latency_ms=20",
        "--set",
        "sut.batch_size=2",
        "--set",
        "loadgen.min_duration_ms=300",
        "--set",
        "loadgen.min_query_count=8",
        "--set",
        "loadgen.offline_expected_qps=1",
        "--set",
        "cost.gpu_hour_usd=3.6",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    s = run.summary()
    assert s["cost"]["cost_per_image_usd"] == pytest.approx(0.001 / s["samples_per_second"])
    ttfi = s["time_to_first_image_s"]
    assert ttfi["cold"] >= ttfi["warm"] >= 0.02  # the fake sleeps 20 ms per call
    assert s["energy"]["available"] is False
    assert "cuda_reserved_mib" in s["peak_memory"]
    assert "per 1000 images" in run.stdout and "time to first image" in run.stdout
