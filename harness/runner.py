"""One benchmark run, top to bottom: resolve the model, build the QSL and backend, drive LoadGen,
then read its logs and write the summary.

LoadGen's StartTest blocks, so it runs on its own thread while this one watches for the end, a
worker failure, or Ctrl-C. LoadGen has no abort: after a failure every query is answered at once
with an empty response, LoadGen gets `sut.drain_timeout_s` to finish, and if it is still going the
run is reported as failed with `loadgen_alive=True` (the CLI then exits the process hard, keeping the
logs written so far).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg
import numpy as np

from backends.base import Backend, BackendError, ModelSpec, PromptBatch
from backends.registry import BACKENDS, backend_class
from harness import loadgen_settings as lgs
from harness.batcher import Batcher, BatchPolicy
from harness.config import RunConfig, build_options
from harness.errors import ConfigError
from harness.latents import LatentSource
from harness.loadgen_log import read_detail_log
from harness.manifest import build_manifest
from harness.prompts import PromptSet, load_prompts
from harness.qsl import QuerySampleLibrary
from harness.run_dir import write_config, write_json
from harness.sut import SystemUnderTest, WorkerFailure
from harness.worker_pool import ProcessWorker, RemoteError, WorkerDied, WorkerSpec, cpu_slices, with_threads
from harness.workers import InProcessWorker, Worker

log = logging.getLogger(__name__)

# (completed samples, expected total or None)
ProgressFn = Callable[[int, "int | None"], None]

BACKENDS_WITHOUT_WEIGHTS = {"fake"}
TINY_MODEL = "tiny"


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    failure: WorkerFailure | None = None
    interrupted: bool = False
    loadgen_alive: bool = False  # LoadGen's thread did not finish; the process must exit hard

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failure is not None else 0


@dataclass
class _Phases:
    seconds: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        self.seconds[name] = round(time.perf_counter() - start, 3)
        log.info("%s: %.2f s", name, self.seconds[name])
        return result


def resolve_model_path(cfg: RunConfig) -> str:
    """The local diffusers folder for this run ("" when the backend loads no weights)."""
    if cfg.model.path:
        path = Path(cfg.model.path).expanduser()
        if not (path / "model_index.json").is_file():
            what = "does not exist" if not path.exists() else "has no model_index.json"
            raise ConfigError(
                f"model folder {str(path)!r} {what}; pass --model-path DIR with a diffusers pipeline "
                f"folder (for example one saved by save_pretrained or downloaded from the model hub)"
            )
        return str(path.resolve())
    if cfg.run.backend in BACKENDS_WITHOUT_WEIGHTS:
        return ""
    if cfg.model.name == TINY_MODEL:
        from backends.tiny_model import ensure_tiny_model

        return str(ensure_tiny_model())
    raise ConfigError(
        f"model {cfg.model.name!r} needs its weights: pass --model-path DIR, a local diffusers "
        f"folder (model_index.json at its top); nothing is downloaded at run time"
    )


def model_spec(cfg: RunConfig, path: str) -> ModelSpec:
    m = cfg.model
    return ModelSpec(
        name=m.name,
        path=path,
        pipeline=m.pipeline,
        steps=m.steps,
        guidance_scale=m.guidance_scale,
        height=m.height,
        width=m.width,
        scheduler=m.scheduler,
    )


def latent_shape(cfg: RunConfig) -> tuple[int, int, int]:
    m = cfg.model
    f = m.vae_scale_factor
    if m.height % f or m.width % f:
        raise ConfigError(
            f"model.height {m.height} and model.width {m.width} must be multiples of model.vae_scale_factor {f}"
        )
    return (m.latent_channels, m.height // f, m.width // f)


def batch_policy(cfg: RunConfig) -> BatchPolicy:
    s = cfg.sut
    if cfg.run.scenario == "SingleStream":
        return BatchPolicy(max_batch_size=1)
    if cfg.run.scenario == "Offline":
        return BatchPolicy(max_batch_size=s.batch_size)
    return BatchPolicy(max_batch_size=s.max_batch_size, max_wait_ns=int(s.max_wait_ms * 1e6))


def make_backend(cfg: RunConfig, spec: ModelSpec) -> Backend:
    if cfg.run.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {cfg.run.backend!r}; choose one of: {', '.join(sorted(BACKENDS))}")
    try:
        cls = backend_class(cfg.run.backend)
    except BackendError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        options = build_options(cls.Options, cfg.backend)
        return cls(spec, options)  # type: ignore[no-any-return]
    except BackendError as exc:  # an option value the backend refuses
        raise ConfigError(str(exc)) from exc


def direct_batch(prompts: PromptSet, latents: LatentSource, indices: Sequence[int]) -> PromptBatch:
    return PromptBatch(
        sample_indices=tuple(indices),
        prompts=tuple(prompts.texts[i] for i in indices),
        negative_prompts=tuple(prompts.negative_prompts[i] for i in indices),
        latents=latents.for_samples(indices),
    )


class _PngSaver:
    """Writes the images of the first `count` sample indices as PNGs (accuracy mode)."""

    def __init__(self, folder: Path, count: int) -> None:
        self.folder, self.count = folder, count
        if count > 0:
            folder.mkdir(exist_ok=True)

    def __call__(self, indices: Sequence[int], images: np.ndarray) -> None:
        from PIL import Image

        for i, img in zip(indices, images, strict=True):
            if i < self.count:
                Image.fromarray(img).save(self.folder / f"sample_{i:05d}.png")


@dataclass(frozen=True)
class RunInputs:
    model_path: str
    spec: ModelSpec
    prompts: PromptSet
    latents: LatentSource
    qsl: QuerySampleLibrary


def prepare_inputs(cfg: RunConfig) -> RunInputs:
    """Model folder, prompts, latents and QSL: everything but the backend and LoadGen."""
    model_path = resolve_model_path(cfg)
    prompts = load_prompts(cfg.dataset.path, cfg.model.negative_prompt)
    latents = LatentSource(latent_shape(cfg), cfg.latents.mode, file=cfg.latents.file, seed=cfg.latents.seed)
    qsl = QuerySampleLibrary(prompts, latents, cfg.dataset.count, cfg.dataset.performance_sample_count)
    return RunInputs(model_path, model_spec(cfg, model_path), prompts, latents, qsl)


def start_workers(cfg: RunConfig, spec: ModelSpec, warm: PromptBatch, phases: _Phases) -> list[Worker]:
    """One in-process worker by default; a pool of worker processes for workers.count > 1,
    workers.devices, or workers.processes. Loading and warm-up happen here, off LoadGen's clock."""
    w = cfg.workers
    devices = [d.strip() for d in w.devices.split(",") if d.strip()]
    count = len(devices) or w.count
    backend = make_backend(cfg, spec)  # validates the options in this process, before any child
    if count == 1 and not w.processes and not devices and not w.ray_address:
        try:
            phases.timed("load", backend.load)
            phases.timed("warmup", lambda: backend.warmup(warm))
        except BackendError as exc:
            backend.close()
            raise ConfigError(str(exc)) from exc
        return [InProcessWorker(backend)]

    options = backend.options  # type: ignore[attr-defined]
    if w.ray_address:
        from harness.ray_workers import start_ray_workers

        return phases.timed(  # type: ignore[no-any-return]
            "start Ray workers",
            lambda: start_ray_workers(
                w.ray_address, cfg.run.backend, spec, options, warm, count, w.threads_per_worker, w.load_timeout_s
            ),
        )
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    on_cpu = not devices and str(getattr(options, "device", "cpu")).startswith("cpu")
    slices = cpu_slices(count, cores) if on_cpu else [()] * count
    pool: list[ProcessWorker] = []
    for i in range(count):
        opts = options
        if devices:
            opts = dataclasses.replace(options, device=devices[i])
        elif on_cpu:
            opts = with_threads(options, w.threads_per_worker or len(slices[i]))
        name = f"worker-{i}"
        ws = WorkerSpec(cfg.run.backend, spec, opts, warm, cpu_cores=slices[i], env=(("HARNESS_WORKER_NAME", name),))
        pool.append(ProcessWorker(ws, name=name))

    def load_all() -> None:
        for p in pool:
            p.start()
        for p in pool:
            p.wait_ready(w.load_timeout_s)

    try:
        phases.timed(f"load and warm up {count} worker processes", load_all)
    except (WorkerDied, RemoteError) as exc:
        for p in pool:
            p.close()
        raise ConfigError(str(exc)) from exc
    return list(pool)


def run_benchmark(cfg: RunConfig, run_dir: Path, progress: ProgressFn | None = None) -> RunResult:
    phases = _Phases()
    # 1. Inputs: model folder, prompts, latents, QSL.
    inputs = phases.timed("prepare inputs", lambda: prepare_inputs(cfg))
    model_path, spec, prompts, latents, qsl = (
        inputs.model_path,
        inputs.spec,
        inputs.prompts,
        inputs.latents,
        inputs.qsl,
    )

    # 2. LoadGen settings (bad values fail here, before the model loads).
    settings = lgs.build_test_settings(cfg)
    resolved_settings = lgs.settings_dict(settings)
    blockers = lgs.submission_blockers(cfg, settings, qsl.total_count)

    # 3. Backend: load and warm up outside LoadGen's clock, with the largest batch the SUT sends.
    policy = batch_policy(cfg)
    warm = direct_batch(prompts, latents, list(range(min(policy.max_batch_size, qsl.total_count))))
    workers = start_workers(cfg, spec, warm, phases)

    # 4. Record what the run is before it starts.
    write_config(run_dir / "config.toml", cfg, resolved_settings)
    manifest = build_manifest(
        config=cfg.to_dict(),
        backend=workers[0].describe(),
        model_path=model_path,
        prompts={
            "name": prompts.name,
            "source": prompts.source,
            "sha256": prompts.sha256,
            "count": qsl.total_count,
        },
        latents=latents.describe(),
        loadgen={
            "version": lgs.loadgen_version(),
            "seeds": {k: resolved_settings[k] for k in ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")},
            "user_conf": cfg.user_conf,
        },
    )
    manifest["workers"] = [w.describe() for w in workers]
    manifest["valid_for_submission"] = False  # updated with the summary
    write_json(run_dir / "manifest.json", manifest)

    # 5. Drive LoadGen.
    hook = None
    if cfg.run.mode == "accuracy":
        hook = _PngSaver(run_dir / "images", cfg.accuracy.sample_images)
    sut = SystemUnderTest(qsl, Batcher(policy), workers, image_hook=hook, retries=cfg.workers.retries)
    outcome = drive_loadgen(cfg, sut, qsl, settings, run_dir, progress)
    phases.seconds["run"] = round(outcome["wall_s"], 3)
    log.info("run: %.2f s", outcome["wall_s"])
    if not outcome["loadgen_alive"]:
        for worker in workers:
            worker.close()

    # 6. Read LoadGen's logs and summarise.
    summary = _summarise(cfg, run_dir, sut, blockers, phases.seconds, outcome)
    write_json(run_dir / "summary.json", summary)
    manifest["valid_for_submission"] = summary["valid_for_submission"]
    write_json(run_dir / "manifest.json", manifest)
    return RunResult(
        run_dir=run_dir,
        summary=summary,
        failure=sut.failure,
        interrupted=outcome["interrupted"],
        loadgen_alive=outcome["loadgen_alive"],
    )


def drive_loadgen(
    cfg: RunConfig,
    sut: SystemUnderTest,
    qsl: QuerySampleLibrary,
    settings: Any,
    run_dir: Path,
    progress: ProgressFn | None,
) -> dict[str, Any]:
    out = lg.LogOutputSettings()
    out.outdir = str(run_dir)
    out.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = out
    # An explicit, absent audit file: LoadGen would otherwise pick up ./audit.config from the cwd.
    audit = str(run_dir / "audit.config")

    lg_sut = lg.ConstructSUT(sut.issue_queries, sut.flush_queries)
    lg_qsl = lg.ConstructQSL(qsl.total_count, qsl.performance_count, qsl.load_samples, qsl.unload_samples)
    sut.start()
    thread = threading.Thread(
        target=lg.StartTestWithLogSettings,
        args=(lg_sut, lg_qsl, settings, log_settings, audit),
        name="loadgen",
        daemon=True,
    )
    expected = qsl.total_count if cfg.run.mode == "accuracy" else None
    # Ctrl-C must not raise inside LoadGen's Python callbacks (that crashed LoadGen's thread):
    # while LoadGen runs, SIGINT only sets a flag that this loop acts on.
    interrupt = threading.Event()
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: interrupt.set())
    failed_at: float | None = None
    start = time.perf_counter()
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
            if progress is not None:
                total = expected
                if total is None and cfg.run.scenario == "Offline" and sut.stats.issued:
                    total = sut.stats.issued
                progress(sut.stats.completed, total)
            if interrupt.is_set():
                log.warning("interrupted: answering pending queries and stopping")
                sut.abort()
                thread.join(2.0)
                break
            if sut.failed.is_set():
                failed_at = failed_at or time.perf_counter()
                if time.perf_counter() - failed_at > cfg.sut.drain_timeout_s:
                    break
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
    interrupted = interrupt.is_set()
    wall_s = time.perf_counter() - start
    alive = thread.is_alive()
    sut.stop(timeout_s=0.0 if alive else 10.0)
    if not alive:
        lg.DestroyQSL(lg_qsl)
        lg.DestroySUT(lg_sut)
    return {"wall_s": wall_s, "interrupted": interrupted, "loadgen_alive": alive}


def _percentiles_ms(values_ns: list[int]) -> dict[str, float]:
    if not values_ns:
        return {}
    a = np.asarray(values_ns, dtype=np.float64) / 1e6
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


def _summarise(
    cfg: RunConfig,
    run_dir: Path,
    sut: SystemUnderTest,
    blockers: list[str],
    phases: dict[str, float],
    outcome: dict[str, Any],
) -> dict[str, Any]:
    detail = read_detail_log(run_dir / "mlperf_log_detail.txt")
    status = "ok"
    error = None
    if outcome["interrupted"]:
        status, error = "interrupted", "interrupted by the user (Ctrl-C)"
    elif sut.failure is not None:
        status, error = "failed", sut.failure.message()
    result_valid = detail.result_valid and status == "ok" and not detail.errors
    blockers = list(blockers)
    if detail.errors:  # LoadGen finished, but its result cannot be trusted
        blockers.append(f"LoadGen logged errors: {'; '.join(detail.errors[:3])}")
    if cfg.run.mode != "performance":
        blockers.append("accuracy runs carry no performance result")
    elif not result_valid:
        reason = detail.get("result_invalid_reason") or "see mlperf_log_summary.txt"
        blockers.append(f"LoadGen result is {detail.get('result_validity', 'missing')}: {reason}")
    stats = sut.stats
    return {
        "status": status,
        "error": error,
        "scenario": cfg.run.scenario,
        "mode": cfg.run.mode,
        "backend": cfg.run.backend,
        "model": cfg.model.name,
        "result_valid": result_valid,
        "valid_for_submission": not blockers and status == "ok",
        "submission_blockers": blockers,
        "samples_per_second": detail.samples_per_second(cfg.run.scenario),
        "latency_ms": detail.latency_ms(),
        "batch_sizes": {str(k): v for k, v in sorted(stats.batch_sizes.items())},
        "samples_completed": stats.completed,
        "samples_generated": sum(k * v for k, v in stats.batch_sizes.items()),
        "query_count": detail.get("result_query_count"),
        "loadgen": {
            "result_validity": detail.get("result_validity"),
            "invalid_reason": detail.get("result_invalid_reason"),
            "early_stopping_met": detail.get("early_stopping_met"),
            "errors": detail.errors,
            "warnings": detail.warnings,
        },
        "harness": {
            "queue_delay_ms": _percentiles_ms(stats.queue_delays_ns),
            "batch_time_ms": _percentiles_ms(stats.batch_times_ns),
        },
        "workers": [
            {
                "name": name,
                "batches": stats.worker_batches[name],
                "samples": stats.worker_samples[name],
                "busy_s": round(stats.worker_busy_ns[name] / 1e9, 3),
            }
            for name in sorted(stats.worker_batches)
        ],
        "retried_failures": [
            {"worker": f.worker, "sample_indices": list(f.sample_indices), "error": f.error} for f in sut.retried
        ],
        "phases_s": phases,
        "failure": None
        if sut.failure is None
        else {
            "backend": sut.failure.backend,
            "worker": sut.failure.worker,
            "sample_indices": list(sut.failure.sample_indices),
            "error": sut.failure.error,
            "traceback": sut.failure.traceback,
        },
        "run_dir": str(run_dir),
    }
