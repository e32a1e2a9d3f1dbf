"""What the manifest records about the machine."""

from __future__ import annotations

from pathlib import Path

from harness.config import resolve_config
from harness.run.manifest import nvidia_driver_version, performance_environment, round_record, what_ran


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


def test_what_ran_is_what_the_backend_did_not_what_the_config_names() -> None:
    fake = resolve_config("sdxl", cli={"run.backend": "fake"}).to_dict()
    ran = what_ran(fake, {"backend": "fake", "dtype": "uint8"}, "")
    assert not ran.runs_model and ran.weights.startswith("none") and ran.weight_data_types == "none"
    assert (ran.height, ran.width, ran.steps) == (1024, 1024, 20)
    random = resolve_config("sdxl", sets=["model.weights=random"]).to_dict()
    ran = what_ran(random, {"dtype": "float16"}, "")
    assert ran.runs_model and ran.weights.startswith("random weights") and ran.weight_data_types == "float16"
    real = resolve_config("sdxl").to_dict()
    assert what_ran(real, {"dtype": "bfloat16"}, "/models/sdxl").weights == "/models/sdxl"
    assert what_ran(resolve_config("tiny").to_dict(), {"dtype": "float32"}, "").weights.startswith("built in code")


def test_the_manifest_records_the_round_and_where_the_seeds_came_from() -> None:
    made = round_record(resolve_config("sdxl", sets=["mlperf.round=v6.0"]).to_dict())
    assert made["round"] == "v6.0" and "v6.0 round's, set by the harness" in made["seeds_from"]
    none = round_record(resolve_config("sdxl", sets=["loadgen.qsl_rng_seed=7"]).to_dict())
    assert (
        none["round"] is None
        and none["seeds_from"] == "LoadGen's built-in mlperf.conf, then --set loadgen.qsl_rng_seed"
    )
