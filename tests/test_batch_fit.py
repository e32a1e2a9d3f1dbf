"""The largest batch that fits: the search (harness/studies/batch_fit.py) and `python -m harness fit`."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from harness.commands import fit as cmd_fit
from harness.studies.batch_fit import find_largest_batch, is_out_of_memory


def _memory_limit(limit: int, calls: list[int]):
    """A probe whose batches above `limit` run out of memory."""

    def probe(b: int) -> dict:
        calls.append(b)
        return {"status": "ok" if b <= limit else "oom"}

    return probe


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 8, 11, 37, 63, 64])
def test_the_search_finds_the_exact_limit_in_few_calls(limit: int) -> None:
    calls: list[int] = []
    result = find_largest_batch(_memory_limit(limit, calls), max_batch=256)
    assert result.largest_batch == limit and result.limited_by == "memory"
    assert [p["batch_size"] for p in result.probes] == calls
    assert len(calls) == len(set(calls))  # no size is tried twice
    assert len(calls) <= 2 * math.ceil(math.log2(limit + 1)) + 1
    assert max(b for b in calls if b <= limit) == limit and min(b for b in calls if b > limit) == limit + 1


def test_the_cap_and_a_batch_of_one_that_does_not_fit() -> None:
    calls: list[int] = []
    result = find_largest_batch(_memory_limit(1000, calls), max_batch=24)
    assert (result.largest_batch, result.limited_by, calls) == (24, "max_batch", [1, 2, 4, 8, 16, 24])
    calls = []
    result = find_largest_batch(_memory_limit(0, calls), max_batch=24)
    assert (result.largest_batch, result.limited_by, calls) == (0, "memory", [1])


def test_a_failure_other_than_memory_stops_the_search() -> None:
    def probe(b: int) -> dict:
        return {"status": "error", "error": "boom"} if b == 4 else {"status": "ok"}

    result = find_largest_batch(probe, max_batch=64)
    assert (result.largest_batch, result.limited_by) == (2, "error")
    assert [p["batch_size"] for p in result.probes] == [1, 2, 4] and result.probes[-1]["error"] == "boom"


def test_out_of_memory_is_recognised_in_each_library_s_words() -> None:
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(
        RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer")
    )
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert is_out_of_memory(RuntimeError("CUDA error: cudaErrorMemoryAllocation"))
    assert not is_out_of_memory(ValueError("height must be a multiple of 8"))


# python -m harness fit --------------------------------------------------------------------------


def _fit(tmp_path: Path, *args: str) -> tuple[int, dict | None]:
    """cmd_fit.main in this process, logging put back afterwards; (exit code, fit.json)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        code = cmd_fit.main(["--output-dir", str(tmp_path), *args])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    found = list(tmp_path.glob("*-fit/fit.json"))
    return code, (json.loads(found[0].read_text()) if found else None)


def test_fit_finds_where_the_backend_runs_out_of_memory(
    harness_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, fit = _fit(tmp_path, "--backend", "fake", "--set", "backend.oom_above_batch=11")
    assert code == 0 and fit is not None
    assert (fit["largest_batch"], fit["limited_by"], fit["max_batch"]) == (11, "memory", 64)
    assert [(p["batch_size"], p["status"]) for p in fit["probes"]] == [
        (1, "ok"),
        (2, "ok"),
        (4, "ok"),
        (8, "ok"),
        (16, "oom"),
        (12, "oom"),
        (10, "ok"),
        (11, "ok"),
    ]
    assert "MemoryError" in fit["probes"][4]["error"] and fit["probes"][3]["error"] is None
    assert fit["peak_memory_mib"] == fit["probes"][-1]["cpu_rss_mib"] > 0  # no CUDA here: the resident set
    assert fit["device_memory_mib"] is None and fit["host"]["cpu"] and fit["libraries"]
    # No CUDA: the default cap on the allocator is recorded, and that it did not apply.
    assert (fit["memory_fraction"], fit["memory_limit_mib"]) == (0.85, None)
    assert "largest batch that fits: 11 (the next size ran out of memory)" in capsys.readouterr().out


@pytest.mark.parametrize(("device", "index"), [("cuda:1", 1), ("cuda", 0), (None, 0)])
def test_the_memory_cap_holds_during_the_search_and_is_lifted_after(
    monkeypatch: pytest.MonkeyPatch, device: str | None, index: int
) -> None:
    calls: list[tuple[str, float, int]] = []
    properties = {0: 80000 * 2**20, 1: 40000 * 2**20}
    monkeypatch.setattr(cmd_fit, "_cuda_in_use", lambda: torch)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=properties[i]))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(("empty_cache", 0, -1)))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append(("fraction", f, d)))
    with pytest.raises(RuntimeError, match="a probe failed"), cmd_fit.capped_cuda_memory(0.85, device) as limit:
        # The cap is on the backend's device, in MiB of that device's memory.
        assert limit == 0.85 * properties[index] / 2**20
        assert calls == [("empty_cache", 0, -1), ("fraction", 0.85, index)]
        raise RuntimeError("a probe failed")
    assert calls[-1] == ("fraction", 1.0, index)  # lifted even when the search raised


def test_no_memory_cap_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cmd_fit, "_cuda_in_use", lambda: None)
    with cmd_fit.capped_cuda_memory(0.5, "cuda") as limit:
        assert limit is None


@pytest.mark.parametrize("value", ["0", "1.5", "-0.2", "most", "nan"])
def test_fit_refuses_a_memory_fraction_outside_0_to_1(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cmd_fit.main(["--memory-fraction", value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"--memory-fraction must be a number in (0, 1], got {value!r}" in err


def test_fit_runs_the_real_pipeline_with_one_step_per_call(
    harness_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_torch_thread: None
) -> None:
    seen_steps: list[int] = []
    make_backend = cmd_fit.make_backend

    def recording(cfg, spec):  # type: ignore[no-untyped-def]
        seen_steps.append(spec.steps)
        return make_backend(cfg, spec)

    monkeypatch.setattr(cmd_fit, "make_backend", recording)
    sets = ["--set", "model.height=32", "--set", "model.width=32"]
    code, fit = _fit(tmp_path, "--max-batch", "3", *sets)
    assert code == 0 and fit is not None and seen_steps == [1]
    assert (fit["largest_batch"], fit["limited_by"], fit["steps"], fit["probe_steps"]) == (3, "max_batch", 8, 1)
    assert [p["batch_size"] for p in fit["probes"]] == [1, 2, 3] and all(p["seconds"] > 0 for p in fit["probes"])
    assert fit["backend"] == "diffusers-eager" and (fit["height"], fit["width"]) == (32, 32)


def test_fit_stops_on_a_failure_other_than_memory_with_exit_code_1(harness_cache: Path, tmp_path: Path) -> None:
    code, fit = _fit(tmp_path, "--backend", "fake", "--set", "backend.fail_at_call=3")
    assert code == 1 and fit is not None
    assert (fit["largest_batch"], fit["limited_by"]) == (2, "error")
    assert fit["probes"][-1]["batch_size"] == 4 and "injected failure on call 3" in fit["probes"][-1]["error"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_backend_that_refuses_to_load_is_bad_input(
    harness_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, fit = _fit(tmp_path, "--set", "backend.device=cuda")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and fit is None and err.startswith("error: loading tiny failed") and "no silent fallback" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "torch-compile"], "fit cannot probe backend 'torch-compile'"),
        (["--set", "model.height=30"], "multiples of model.vae_scale_factor"),
    ],
)
def test_fit_bad_input_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, fit = _fit(tmp_path, *args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and fit is None and err.startswith("error:") and "\n" not in err and message in err
    assert not list(tmp_path.iterdir())


def test_fit_refuses_a_max_batch_below_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cmd_fit.main(["--output-dir", str(tmp_path), "--max-batch", "0"])
    assert exc.value.code == 2 and "--max-batch must be an integer >= 1, got '0'" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_stops_where_the_allocator_runs_out(harness_cache: Path, tmp_path: Path) -> None:
    # Cap torch's allocator at six times the batch-1 footprint (weights included): the search must end on a
    # real CUDA OOM, recover from it, and report the peak memory of the largest batch within the cap.
    sets = ["--set", "backend.device=cuda", "--set", "model.height=256", "--set", "model.width=256"]
    code, one = _fit(tmp_path / "one", "--max-batch", "1", *sets)
    assert code == 0 and one is not None and one["device_memory_mib"] > 0
    cap_mib = 6 * one["probes"][0]["cuda_reserved_mib"]
    fraction = min(1.0, cap_mib / one["device_memory_mib"])
    code, fit = _fit(tmp_path / "capped", "--max-batch", "512", "--memory-fraction", f"{fraction:.6f}", *sets)
    assert code == 0 and fit is not None
    assert fit["limited_by"] == "memory" and 2 <= fit["largest_batch"] < 512
    assert fit["memory_limit_mib"] == pytest.approx(cap_mib, abs=0.2)
    assert any(p["status"] == "oom" and "out of memory" in p["error"].lower() for p in fit["probes"])
    assert fit["peak_memory_mib"] <= cap_mib * 1.01
    # The cap is lifted afterwards: a tensor larger than it allocates.
    big = torch.empty(int(cap_mib * 1.5 * 2**20), dtype=torch.uint8, device="cuda")
    del big
