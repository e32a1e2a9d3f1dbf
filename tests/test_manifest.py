"""What the manifest records about the machine."""

from __future__ import annotations

from pathlib import Path

from harness.manifest import nvidia_driver_version, performance_environment


def test_the_nvidia_driver_version_comes_from_proc(tmp_path: Path) -> None:
    proprietary = tmp_path / "a"
    proprietary.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Thu Oct  2 2025\n")
    assert nvidia_driver_version(proprietary) == "580.159.04"
    open_module = tmp_path / "b"
    open_module.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  575.57.08  Release Build\n")
    assert nvidia_driver_version(open_module) == "575.57.08"
    assert nvidia_driver_version(tmp_path / "missing") is None


def test_the_environment_that_changes_speed_or_memory_is_recorded() -> None:
    env = {
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "CUDA_VISIBLE_DEVICES": "1",
        "OMP_NUM_THREADS": "4",
        "HOME": "/root",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    assert performance_environment(env) == {
        "CUDA_VISIBLE_DEVICES": "1",
        "OMP_NUM_THREADS": "4",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    }
