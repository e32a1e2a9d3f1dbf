"""One benchmark run, top to bottom: resolve the model, build the QSL and backend, drive LoadGen,
then read its logs and write the summary.

LoadGen's StartTest blocks, so it runs on its own thread while this one watches for the end, a
worker failure, or Ctrl-C. LoadGen has no abort: after a failure every query is answered at once
with an empty response, LoadGen gets `sut.drain_timeout_s` to finish, and if it is still going the
run is reported as failed with `loadgen_alive=True` (the CLI then exits the process hard, keeping the
logs written so far).

The jobs around it live next to it: the model and inputs in harness/run/model.py, the summary record in
harness/run/summary.py, the LoadGen handles in harness/loadgen/session.py.
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

import numpy as np

from backends.base import BackendError, ModelSpec, PromptBatch, PromptPreprocessor
from harness.config import RunConfig
from harness.data.qsl import QuerySampleLibrary
from harness.errors import ConfigError
from harness.loadgen import settings as lgs
from harness.loadgen.audit_config import apply_audit_config
from harness.loadgen.module import lg
from harness.measure import cost, energy, profiling
from harness.measure.profiling import TraceSettings, make_tracer, trace_settings
from harness.run import accuracy_step, first_image, quality_step
from harness.run.manifest import build_manifest
from harness.run.model import (
    backend_options,
    batch_policy,
    check_weights,
    direct_batch,
    latent_shape,
    make_backend,
    prepare_inputs,
    weights_source,
)
from harness.run.run_dir import write_config, write_json
from harness.run.summary import RunSummary, summarise
from harness.sut.choice import choose_sut, make_sut
from harness.sut.python_sut import SystemUnderTest, WorkerFailure
from harness.workers.in_process import InProcessWorker, Worker
from harness.workers.process_pool import ProcessWorker, RemoteError, WorkerDied, WorkerSpec, cpu_slices, with_threads

log = logging.getLogger(__name__)

# (completed samples, expected total or None)
ProgressFn = Callable[[int, "int | None"], None]

RANDOM_WEIGHTS_BLOCKER = "random weights (model.weights = random): an architecture-only performance run"


@dataclass
class RunResult:
    run_dir: Path
    summary: RunSummary
    failure: WorkerFailure | None = None
    interrupted: bool = False
    loadgen_alive: bool = False  # LoadGen's thread did not finish; the process must exit hard

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if self.failure is not None:
            return 1
        verdict = self.summary.accuracy_verdict
        return accuracy_step.VERDICT_EXIT_CODES.get(verdict, 0) if verdict else 0  # accuracy FAIL: 3


@dataclass(frozen=True)
class LoadGenOutcome:
    wall_s: float
    interrupted: bool
    loadgen_alive: bool  # LoadGen's thread was still running when the run gave up on it


@dataclass
class Phases:
    seconds: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        self.seconds[name] = round(time.perf_counter() - start, 3)
        log.info("%s: %.2f s", name, self.seconds[name])
        return result


def validate_config(cfg: RunConfig) -> Any:
    """Everything about the configuration that can be checked in a second, before the inputs are prepared
    (the model folder, prompts and latents take seconds): the backend and its options, a CUDA device this
    machine lacks, the latent shape, and LoadGen's settings. Returns the LoadGen TestSettings."""
    check_weights(cfg)
    _, options = backend_options(cfg)
    devices = [d.strip() for d in cfg.workers.devices.split(",") if d.strip()] or [str(getattr(options, "device", ""))]
    if not cfg.workers.ray_address and any(d.startswith("cuda") for d in devices):  # Ray actors may run elsewhere
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {', '.join(devices)} requested but torch.cuda.is_available() is False on this machine "
                f"(torch {torch.__version__}); no silent fallback to the CPU: set backend.device=cpu to run there"
            )
    latent_shape(cfg)
    choose_sut(cfg.sut.kind)  # sut.kind=native where the native SUT cannot run: refused here
    return lgs.build_test_settings(cfg)


class _PngSaver:
    """Writes the images of the first `per_category` samples of each prompt category as PNGs (accuracy
    mode), so that the report's contact sheet shows every category, not just the first one of the pack."""

    def __init__(self, folder: Path, per_category: int, categories: Sequence[str]) -> None:
        self.folder = folder
        counts: dict[str, int] = {}
        self.wanted: set[int] = set()
        for i, category in enumerate(categories):
            if counts.get(category, 0) < per_category:
                counts[category] = counts.get(category, 0) + 1
                self.wanted.add(i)
        if self.wanted:
            folder.mkdir(exist_ok=True)

    def __call__(self, indices: Sequence[int], images: np.ndarray) -> None:
        from PIL import Image

        for i, img in zip(indices, images, strict=True):
            if i in self.wanted:
                Image.fromarray(img).save(self.folder / f"sample_{i:05d}.png")


def start_workers(
    cfg: RunConfig, spec: ModelSpec, warm: PromptBatch, phases: Phases, trace: TraceSettings | None = None
) -> list[Worker]:
    """One in-process worker by default; a pool of worker processes for workers.count > 1,
    workers.devices, or workers.processes. Loading and warm-up happen here, off LoadGen's clock.
    `trace` ([profile]) gives each worker a tracer for its first timed batches."""
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
        if getattr(backend, "shared_by_threads", False):
            # A backend that waits on a remote service (http): `concurrency` worker threads share it, so that
            # many requests are in flight while each worker runs its batch synchronously.
            n = int(getattr(backend.options, "concurrency", 1))
            tracers = [make_tracer(trace, "worker-0")] + [None] * (n - 1)  # one profiler thread at most
            return [InProcessWorker(backend, name=f"worker-{i}", tracer=tracers[i]) for i in range(n)]
        return [InProcessWorker(backend, tracer=make_tracer(trace, "worker-0"))]

    options = backend.options
    if w.ray_address:
        from harness.workers.ray_actors import start_ray_workers

        if trace is not None:
            raise ConfigError(
                "profile.trace and profile.nvtx are not supported with Ray actors (workers.ray_address): the "
                "traces would be written on the actors' machines; use a local worker pool (workers.count)"
            )
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
        ws = WorkerSpec(
            cfg.run.backend,
            spec,
            opts,
            warm,
            cpu_cores=slices[i],
            env=(("HARNESS_WORKER_NAME", name),),
            trace=trace,
            name=name,
        )
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
    phases = Phases()
    # 0. The whole configuration, checked before anything slow (LoadGen settings included).
    settings = validate_config(cfg)
    sut_choice = choose_sut(cfg.sut.kind)
    # 1. Inputs: model folder, prompts, latents, QSL.
    inputs = phases.timed("prepare inputs", lambda: prepare_inputs(cfg))
    model_path, spec, prompts, latents, qsl = (
        inputs.model_path,
        inputs.spec,
        inputs.prompts,
        inputs.latents,
        inputs.qsl,
    )

    # 2. LoadGen settings (built in step 0) and the audit layer of a compliance test.
    if cfg.run.audit_config:  # a compliance test: LoadGen's audit.config is the last layer
        apply_audit_config(
            settings, cfg.run.audit_config, run_dir, cfg.model.mlperf_name or lgs.DEV_MODEL_NAME, cfg.run.scenario
        )
    resolved_settings = lgs.settings_dict(settings)
    blockers = lgs.submission_blockers(cfg, settings, qsl.total_count)
    if cfg.model.weights == "random":
        blockers.append(RANDOM_WEIGHTS_BLOCKER)
    # Accuracy mode: the scorer's files, thresholds and reference run are checked before the model loads.
    accuracy_plan = accuracy_step.prepare(cfg, qsl.total_count) if cfg.run.mode == "accuracy" else None
    # Accuracy mode with quality.diversity_seeds > 0: the LPIPS weights are checked before the model loads.
    size = batch_policy(cfg).max_batch_size
    quality_plan = quality_step.prepare(cfg, prompts, qsl.total_count, latent_shape(cfg), size)

    # 3. Backend: load and warm up outside LoadGen's clock, with the largest batch the SUT sends.
    policy = batch_policy(cfg)
    warm = direct_batch(prompts, latents, list(range(min(policy.max_batch_size, qsl.total_count))))
    workers = start_workers(cfg, spec, warm, phases, trace_settings(cfg.profile, run_dir))
    _pretokenize_at_load(qsl, workers)

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
    manifest["sut"] = sut_choice.to_dict()  # which SUT answered LoadGen (sut.kind)
    manifest["model"]["weights_source"] = weights_source(cfg, spec)
    manifest["profile"] = profiling.describe(cfg.profile, run_dir)
    manifest["valid_for_submission"] = False  # updated with the summary
    write_json(run_dir / "manifest.json", manifest)

    # 5. Drive LoadGen.
    hook = None
    if cfg.run.mode == "accuracy":
        hook = _PngSaver(
            run_dir / "images", cfg.accuracy.sample_images, [qsl.category(i) for i in range(qsl.total_count)]
        )
    sut = make_sut(sut_choice, qsl, policy, workers, image_hook=hook, retries=cfg.workers.retries)
    # Energy (NVML) over the timed run, on this machine's GPUs only (Ray actors may run elsewhere).
    devices = [] if cfg.workers.ray_address else [str(w.describe().get("device", "")) for w in workers]
    meter = energy.start_meter(devices)
    outcome = drive_loadgen(cfg, sut, qsl, settings, run_dir, progress)
    energy_used = meter.stop(sum(k * v for k, v in sut.stats.batch_sizes.items()))
    phases.seconds["run"] = round(outcome.wall_s, 3)
    log.info("run: %.2f s", outcome.wall_s)
    warm_s = None
    diversity = None  # quality: prompts x seeds images through the still-loaded workers, off LoadGen's clock
    if quality_plan is not None and sut.failure is None and not outcome.interrupted and not outcome.loadgen_alive:
        diversity = phases.timed("diversity images", lambda: quality_step.generate(quality_plan, workers, run_dir))
    if not outcome.loadgen_alive:
        if sut.failure is None and not outcome.interrupted:  # warm time to first image: one batch-1 call
            warm_s = first_image.warm_latency_s(workers[0], direct_batch(prompts, latents, [0]))
        for worker in workers:
            worker.close()

    # 6. Read LoadGen's logs and summarise.
    summary = summarise(cfg, run_dir, sut, blockers, phases.seconds, outcome.wall_s, outcome.interrupted)
    summary = dataclasses.replace(summary, weights=cfg.model.weights, profile=profiling.outputs(cfg.profile, run_dir))
    write_sample_latencies(run_dir / "sample_latencies.csv", sut.stats.sample_latencies)
    # 7. Accuracy mode: score mlperf_log_accuracy.json (CLIP, FID) -> accuracy.txt, accuracy.json.
    if accuracy_plan is not None and summary.status == "ok":
        scored = phases.timed(
            "accuracy", lambda: accuracy_step.score(accuracy_plan, run_dir, prompts.texts, prompts.categories)
        )
        summary = dataclasses.replace(summary, accuracy=scored, phases_s=dict(phases.seconds))
    if diversity is not None:  # LPIPS diversity of those images -> quality.json
        scored = phases.timed("quality", lambda: quality_step.score(diversity, run_dir))
        summary = dataclasses.replace(summary, quality=scored, phases_s=dict(phases.seconds))
    summary = dataclasses.replace(
        summary,
        time_to_first_image_s=first_image.time_to_first_image(sut.stats.first_image_unix_s, warm_s),
        energy=energy_used,
    )
    throughput = cost.Throughput(summary.scenario, summary.samples_per_second, summary.latency_ms.get("mean"))
    summary = dataclasses.replace(summary, cost=cost.for_run(cfg, throughput, run_dir))
    write_json(run_dir / "summary.json", summary.to_json())
    manifest["valid_for_submission"] = summary.valid_for_submission
    write_json(run_dir / "manifest.json", manifest)
    return RunResult(
        run_dir=run_dir,
        summary=summary,
        failure=sut.failure,
        interrupted=outcome.interrupted,
        loadgen_alive=outcome.loadgen_alive,
    )


def _pretokenize_at_load(qsl: QuerySampleLibrary, workers: Sequence[Worker]) -> None:
    """Let the QSL prepare prompts (tokenize) in load_samples, outside the timed path, when the model
    offers it: through the backend in this process, or through the first worker process or Ray actor."""
    backend = getattr(workers[0], "backend", None) if len(workers) == 1 else None
    if isinstance(backend, PromptPreprocessor):
        qsl.set_preprocessor(backend.preprocess_prompts)
    elif (
        workers and all(hasattr(w, "preprocess_prompts") for w in workers) and workers[0].describe().get("pretokenize")
    ):
        # Worker processes or Ray actors, all running the same model: the first one tokenizes (over its
        # pipe or as an actor call), and the ids travel with each batch.
        qsl.set_preprocessor(workers[0].preprocess_prompts)  # type: ignore[attr-defined]


def drive_loadgen(
    cfg: RunConfig,
    sut: SystemUnderTest,
    qsl: QuerySampleLibrary,
    settings: Any,
    run_dir: Path,
    progress: ProgressFn | None,
) -> LoadGenOutcome:
    out = lg.LogOutputSettings()
    out.outdir = str(run_dir)
    out.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = out
    log_settings.enable_trace = cfg.profile.loadgen_trace  # LoadGen's own trace: large, off unless asked for
    # An explicit audit file, present only for compliance tests (run.audit_config): LoadGen would
    # otherwise pick up ./audit.config from the cwd.
    audit = str(run_dir / "audit.config")

    expected = qsl.total_count if cfg.run.mode == "accuracy" else None
    # Ctrl-C must not raise inside LoadGen's Python callbacks (that crashed LoadGen's thread):
    # while LoadGen runs, SIGINT only sets a flag that this loop acts on.
    interrupt = threading.Event()
    with sut.session(qsl) as session:  # the Python SUT's callbacks, or the native SUT's handle
        sut.start()
        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: interrupt.set())
        failed_at: float | None = None
        start = time.perf_counter()
        thread = session.start(settings, log_settings, audit)
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
        wall_s = time.perf_counter() - start
        alive = thread.is_alive()
        sut.stop(timeout_s=0.0 if alive else 10.0)
    # the session destroyed LoadGen's SUT and QSL, unless its thread still runs (the process exits hard)
    return LoadGenOutcome(wall_s=wall_s, interrupted=interrupt.is_set(), loadgen_alive=alive)


def write_sample_latencies(path: Path, latencies: Sequence[tuple[int, int]]) -> None:
    """One row per answered sample, in completion order: the report's latency distribution."""
    with path.open("w", encoding="utf-8") as f:
        f.write("sample_index,latency_ms\n")
        f.writelines(f"{i},{ns / 1e6:.3f}\n" for i, ns in latencies)
