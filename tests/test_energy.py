"""Energy per image from NVML counters: the arithmetic with a fake counter, and the clean 'unavailable'
answers where there is no NVIDIA GPU or no nvidia-ml-py (as on these machines)."""

from __future__ import annotations

import pytest

from harness.measure.energy import cuda_device_indices, start_meter


def test_joules_per_image_from_the_counters_of_the_devices_used() -> None:
    counters = {0: 1_000_000, 1: 5_000_000}  # millijoules since the driver loaded

    def read(index: int) -> int:
        return counters[index]

    meter = start_meter(["cuda:0", "cuda:1"], counter=read)
    counters[0] += 30_000  # 30 J on device 0
    counters[1] += 10_500  # 10.5 J on device 1
    energy = meter.stop(images=8)
    assert energy["available"] is True
    assert energy["joules"] == pytest.approx(40.5)
    assert energy["joules_per_image"] == pytest.approx(40.5 / 8)
    assert energy["devices"] == {"0": 30.0, "1": 10.5}
    assert "nvml" in energy["source"]
    assert meter.stop(images=0)["joules_per_image"] is None  # no image made: no per-image figure


def test_a_cpu_run_has_no_energy_figure() -> None:
    for devices in (["cpu"], ["none"], []):
        energy = start_meter(devices).stop(images=4)
        assert energy == {"available": False, "reason": energy["reason"]} and "no CUDA device" in energy["reason"]


def test_no_nvml_is_a_reason_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name: str, *args, **kwargs):
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    energy = start_meter(["cuda"]).stop(images=4)
    assert energy["available"] is False and "nvidia-ml-py" in energy["reason"]


def test_a_counter_that_cannot_be_read_is_a_reason() -> None:
    def unsupported(index: int) -> int:
        raise RuntimeError("Not Supported")

    energy = start_meter(["cuda:0"], counter=unsupported).stop(images=4)
    assert energy["available"] is False and "Not Supported" in energy["reason"]


def test_device_names_map_to_nvml_indices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cuda_device_indices(["cuda", "cuda:0", "cuda:2", "cpu", "CUDAExecutionProvider"]) == [0, 2]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert cuda_device_indices(["cuda:0", "cuda:1"]) == [1, 3]
