"""`python -m harness fit --model sdxl --set model.weights=random --set backend.device=cuda`: the largest
batch that fits in memory, and the peak memory at every batch size tried.

One process loads the model once, by the run's own path (real weights, or `model.weights=random`), then
calls the backend at batch 1, 2, 4, ... up to `--max-batch` until a call runs out of memory, and bisects
between the last size that fitted and the first that did not (harness/studies/batch_fit.py). After an
out-of-memory call the cached memory is released (gc, torch.cuda.empty_cache); every call starts
from an emptied CUDA cache, so its reserved figure is its own.

Each call runs `--probe-steps` denoising steps (default 1): every step runs the same computation and
frees its activations before the next, so the peak memory of a call does not grow with the step count,
and the search costs seconds instead of minutes. `--probe-steps 0` runs the model's own steps. The
run that follows at the found size, at full steps, records its own peak memory (the sweep's `--fit`).

`--memory-fraction` (default 0.85) caps torch's CUDA allocator at that share of the device's memory for the
search (torch.cuda.set_per_process_memory_fraction): the answer leaves the rest for what a full run adds
over a probe. Measured on an H100 (benchmarks/results/issue5_h100_2026-11-26): with no cap, fit found 47
for SDXL at 1024 x 1024 and 41 for FLUX.2-klein-4B, and full Offline runs at those batches ran out of
memory (about 29 GiB of the allocator's cache was free but fragmented when a 23 GiB request came);
at batch 32 a full SDXL run reserved 12% more per image than the probes' trend. `--memory-fraction 1`
probes to the edge. Without CUDA the cap does not apply (fit.json says so).

Peak memory per call: torch.cuda.max_memory_allocated and max_memory_reserved, reset before each call,
where torch runs on CUDA; else the process's peak resident set, which never goes down (the figure of the
largest call so far). Memory a library allocates outside torch (ONNX Runtime's CUDA arena) is not in
the CUDA figures, though its out-of-memory errors still end the search. On a CPU the kernel's OOM killer
usually ends the process before Python sees a MemoryError, so there `fit` mostly reports
`limited_by: max_batch`. The backend runs in this process: worker settings (`workers.*`) do not apply,
and the answer is per device.

torch-compile and tensorrt build for fixed batch shapes and are refused: probe with diffusers-eager (the
same weights), then run the compiled backend at that size (a sweep records "oom" if it does not fit).

Writes fit.json (largest_batch, limited_by, the probes, host and libraries) into a run directory
`<output-dir>/<time>-<model>-<backend>-fit` and prints one line per call. Exit code 0 when
batch 1 fits, 1 when it does not or a call failed otherwise, 2 for bad input (the backend's refusal to
load included).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

from backends.base import Backend, BackendError
from backends.registry import has_fixed_shapes
from harness.config import resolve_config
from harness.errors import ConfigError, HarnessError
from harness.measure.memory import PEAK_MEMORY_KEYS, headline_memory_mib, peak_memory
from harness.run.manifest import host_info, library_versions
from harness.run.model import RunInputs, direct_batch, latent_shape, make_backend, prepare_inputs
from harness.run.run_dir import make_run_dir, write_json
from harness.studies.batch_fit import FitResult, ProbeFn, find_largest_batch, is_out_of_memory

log = logging.getLogger(__name__)

DEFAULT_MEMORY_FRACTION = 0.85


def _count(name: str, minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {minimum}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness fit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="tiny")
    p.add_argument("--backend", default=None)
    p.add_argument("--model-path", default=None, help="a local diffusers folder (as for a run)")
    p.add_argument("--config", metavar="FILE.toml", default=None)
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--max-batch", type=_count("--max-batch", 1), default=64, help="largest batch tried (default 64)")
    p.add_argument(
        "--probe-steps",
        type=_count("--probe-steps", 0),
        default=1,
        help="denoising steps per call (default 1; 0 = the model's own)",
    )
    p.add_argument(
        "--memory-fraction",
        type=memory_fraction,
        default=DEFAULT_MEMORY_FRACTION,
        help=f"share of the device's memory the search may use (CUDA; default {DEFAULT_MEMORY_FRACTION})",
    )
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def memory_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"--memory-fraction must be a number in (0, 1], got {text!r}")
    return value


def _cuda_in_use() -> Any:
    """torch, where this process has used CUDA; else None."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch
    return None


def _release_memory() -> None:
    gc.collect()
    torch = _cuda_in_use()
    if torch is not None:
        torch.cuda.empty_cache()


def make_probe(backend: Backend, inputs: RunInputs) -> ProbeFn:
    """One generate call at a batch size, on the first prompts of the pack (repeated as needed)."""
    count = len(inputs.prompts.texts)

    def probe(batch_size: int) -> dict[str, Any]:
        batch = direct_batch(inputs.prompts, inputs.latents, [i % count for i in range(batch_size)])
        torch = _cuda_in_use()
        if torch is not None:  # so that the reserved figure is this call's, not a cache left by an earlier one
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        status, error = "ok", None
        start = time.perf_counter()
        try:
            out = backend.generate(batch)
            if out.images.shape[0] != batch_size:
                status, error = "error", f"the backend returned {out.images.shape[0]} images for {batch_size}"
            del out
        except Exception as exc:  # a probe's failure is its result; the search decides what follows
            status = "oom" if is_out_of_memory(exc) else "error"
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        seconds = time.perf_counter() - start
        try:
            memory = peak_memory()
            if status != "ok":
                _release_memory()
        except Exception as exc:  # a CUDA error that poisons the context fails these too: record, stop
            memory = dict.fromkeys(PEAK_MEMORY_KEYS)
            status = "error"
            error = error or f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        log.info(
            "batch %4d: %-5s %8.3f s  peak %s MiB%s",
            batch_size,
            status,
            seconds,
            headline_memory_mib(memory),
            f"  ({error})" if error else "",
        )
        return {"status": status, "seconds": round(seconds, 4), **memory, "error": error}

    return probe


def cuda_index(torch: Any, device: str | None) -> int:
    """The CUDA device a backend.device names ("cuda:1" -> 1); "cuda" or none -> the current one."""
    text = str(device or "")
    index = torch.device(text).index if text.startswith("cuda") else None
    return torch.cuda.current_device() if index is None else index


def _device_memory_mib(device: str | None) -> float | None:
    torch = _cuda_in_use()
    if torch is None:
        return None
    return round(torch.cuda.get_device_properties(cuda_index(torch, device)).total_memory / 2**20, 1)


@contextlib.contextmanager
def capped_cuda_memory(fraction: float, device: str | None) -> Iterator[float | None]:
    """Cap torch's CUDA allocator on `device` (a backend.device) at `fraction` of its memory while inside;
    yields the cap in MiB, or None where this process uses no CUDA (nothing to cap)."""
    torch = _cuda_in_use()
    total = _device_memory_mib(device)
    if torch is None or total is None:
        yield None
        return
    index = cuda_index(torch, device)
    torch.cuda.empty_cache()  # the cap counts what the allocator holds: start from what is in use
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    try:
        yield round(total * fraction, 1)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)


def summarise(
    result: FitResult, args: argparse.Namespace, cfg: Any, steps: int, limit_mib: float | None
) -> dict[str, Any]:
    fitted = [p for p in result.probes if p["status"] == "ok" and p["batch_size"] == result.largest_batch]
    return {
        "model": cfg.model.name,
        "backend": cfg.run.backend,
        "weights": cfg.model.weights,
        "height": cfg.model.height,
        "width": cfg.model.width,
        "steps": cfg.model.steps,
        "probe_steps": steps,
        "max_batch": args.max_batch,
        "largest_batch": result.largest_batch,
        "limited_by": result.limited_by,
        "peak_memory_mib": headline_memory_mib(fitted[0]) if fitted else None,
        "device_memory_mib": _device_memory_mib(cfg.backend.get("device")),
        "memory_fraction": args.memory_fraction,
        "memory_limit_mib": limit_mib,  # None: no CUDA, the cap did not apply
        "probes": result.probes,
        "backend_options": dict(cfg.backend),
        "host": host_info(),
        "libraries": library_versions(),
    }


def main(argv: list[str] | None = None) -> int:
    from harness.commands._shared import configure_logging, fail

    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    cli = {"run.backend": args.backend, "run.output_dir": args.output_dir, "model.path": args.model_path}
    try:
        cfg = resolve_config(args.model, args.config, cli, args.sets)
        if has_fixed_shapes(cfg.run.backend):
            raise ConfigError(
                f"fit cannot probe backend {cfg.run.backend!r} (it builds for fixed batch sizes); probe with "
                "--backend diffusers-eager and run the compiled backend at the size it finds"
            )
        latent_shape(cfg)  # bad sizes are one line, before anything loads
        inputs = prepare_inputs(cfg)
        steps = args.probe_steps or cfg.model.steps
        backend = make_backend(cfg, dataclasses.replace(inputs.spec, steps=steps))
    except HarnessError as exc:
        return fail(str(exc))
    run_dir = make_run_dir(cfg, command="fit")
    limit_mib = None
    try:
        backend.load()
    except Exception as exc:  # noqa: BLE001 - a load that runs out of memory is a result too
        if not is_out_of_memory(exc):
            # The backend's own refusals (a missing folder, CUDA asked for where there is none) are bad input.
            code = 2 if isinstance(exc, BackendError) else 1
            print(f"error: loading {cfg.model.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return code
        line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        result = FitResult(0, "memory", [{"batch_size": 0, "status": "oom", "error": f"while loading: {line}"}])
    else:
        log.info(
            "fit: %s on %s, %dx%d, %d probe step(s), batch 1..%d",
            cfg.model.name,
            cfg.run.backend,
            cfg.model.height,
            cfg.model.width,
            steps,
            args.max_batch,
        )
        with capped_cuda_memory(args.memory_fraction, cfg.backend.get("device")) as limit_mib:
            if limit_mib is not None:
                log.info(
                    "fit: torch's CUDA allocator capped at %.0f MiB (%g of the device)", limit_mib, args.memory_fraction
                )
            result = find_largest_batch(make_probe(backend, inputs), args.max_batch)
    finally:
        backend.close()
    summary = summarise(result, args, cfg, steps, limit_mib)
    write_json(run_dir / "fit.json", summary)
    cap = "" if limit_mib is None else f" within {limit_mib:.0f} MiB ({args.memory_fraction:g} of the device)"
    why = {
        "memory": f"the next size ran out of memory{cap}",
        "max_batch": "--max-batch reached",
        "error": "a call failed",
    }
    print(
        f"largest batch that fits: {result.largest_batch} ({why[result.limited_by]}); "
        f"peak memory {summary['peak_memory_mib']} MiB; {run_dir / 'fit.json'}"
    )
    return 0 if result.largest_batch >= 1 and result.limited_by != "error" else 1
