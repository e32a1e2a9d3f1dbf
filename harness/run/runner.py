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
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg
import numpy as np

from backends.base import Backend, BackendError, ModelSpec, PromptBatch, PromptPreprocessor
from backends.registry import BACKENDS, backend_class
from harness.config import RunConfig, build_options
from harness.data.latents import LatentSource
from harness.data.prompts import PromptSet, load_prompts
from harness.data.qsl import QuerySampleLibrary
from harness.errors import ConfigError
from harness.loadgen import settings as lgs
from harness.loadgen.audit_config import apply_audit_config
from harness.loadgen.logs import read_detail_log
from harness.measure import cost, energy, profiling
from harness.measure.profiling import TraceSettings, make_tracer, trace_settings
from harness.measure.stage_stats import summarise_stages
from harness.run import accuracy_step, first_image, quality_step
from harness.run.manifest import build_manifest
from harness.run.run_dir import write_config, write_json
from harness.sut.batcher import Batcher, BatchPolicy
from harness.sut.python_sut import SystemUnderTest, WorkerFailure
from harness.workers.in_process import InProcessWorker, Worker
from harness.workers.process_pool import ProcessWorker, RemoteError, WorkerDied, WorkerSpec, cpu_slices, with_threads

log = logging.getLogger(__name__)

# (completed samples, expected total or None)
ProgressFn = Callable[[int, "int | None"], None]

BACKENDS_WITHOUT_WEIGHTS = {"fake"}
RANDOM_WEIGHTS_BLOCKER = "random weights (model.weights = random): an architecture-only performance run"


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
        if self.failure is not None:
            return 1
        verdict = (self.summary.get("accuracy") or {}).get("verdict")
        return accuracy_step.VERDICT_EXIT_CODES.get(verdict, 0)  # accuracy FAIL: 3


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
    """The local diffusers folder for this run ("" when the backend loads no weights or builds them).

    In order: `model.path`; nothing for weight-less backends and `model.weights = "random"`; the
    folder `model.builder` makes in code (the tiny models); the model hub's local cache, if it holds
    `model.hub_id` (looked up offline). Nothing is downloaded: a missing folder is one error line
    saying what to download and where.
    """
    m = cfg.model
    _check_weights(cfg)
    if m.path:
        path = Path(m.path).expanduser()
        if not (path / "model_index.json").is_file():
            what = "does not exist" if not path.exists() else "has no model_index.json"
            raise ConfigError(f"model folder {str(path)!r} {what}; {_download_hint(cfg, str(path))}")
        return str(path.resolve())
    if cfg.run.backend in BACKENDS_WITHOUT_WEIGHTS or m.weights == "random":
        return ""
    if m.builder:
        from backends.models.tiny_families import BUILDERS, ensure_built_model

        if m.builder not in BUILDERS:
            raise ConfigError(f"model.builder {m.builder!r} is not known; choose one of: {', '.join(BUILDERS)}")
        return str(ensure_built_model(m.builder))
    cached = _hub_cache_folder(m.hub_id)
    if cached:
        log.info("model %s: weights from the local model hub cache, %s", m.name, cached)
        return cached
    raise ConfigError(f"model {m.name!r} needs its weights and none are on this machine; {_download_hint(cfg, 'DIR')}")


def _download_hint(cfg: RunConfig, folder: str) -> str:
    """What to download and where to put it (nothing is downloaded at run time)."""
    m = cfg.model
    if not m.hub_id:
        return (
            "pass --model-path DIR with a diffusers pipeline folder (model_index.json at its top, for "
            "example one saved by save_pretrained); nothing is downloaded at run time"
        )
    random = ", or --set model.weights=random for a performance run with random weights" if m.components else ""
    return (
        f"download {m.hub_id} on a machine with network (huggingface-cli download {m.hub_id} --local-dir "
        f"{folder}) and pass --model-path {folder}{random}; nothing is downloaded at run time"
    )


def _hub_cache_folder(hub_id: str) -> str:
    """The snapshot folder of `hub_id` in the local model hub cache, if complete there ("" if not);
    looked up without network."""
    if not hub_id:
        return ""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return ""
    try:
        folder = snapshot_download(hub_id, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return ""
    return folder if (Path(folder) / "model_index.json").is_file() else ""


def components_folder(cfg: RunConfig) -> str:
    """`model.components` as an absolute folder (relative paths are from the project root)."""
    from harness.config import PROJECT_ROOT

    if not cfg.model.components:
        if cfg.model.weights == "random":
            raise ConfigError(
                f"model {cfg.model.name!r} has no published component configs (model.components is empty), so "
                "model.weights = 'random' cannot build it; models that have them: "
                + ", ".join(p.name for p in sorted((PROJECT_ROOT / "configs" / "components").iterdir()))
            )
        return ""
    folder = Path(cfg.model.components).expanduser()
    folder = folder if folder.is_absolute() else PROJECT_ROOT / folder
    if cfg.model.weights == "random" and not (folder / "model_index.json").is_file():
        raise ConfigError(
            f"model.components {cfg.model.components!r} has no model_index.json ({folder}); random weights "
            "need the model's published component configs (see configs/components/)"
        )
    return str(folder)


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
        weights=m.weights,
        components=components_folder(cfg),
        latent_layout=m.latent_layout,
        max_sequence_length=m.max_sequence_length,
        pretokenize=m.pretokenize,
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


def sut_batch_sizes(cfg: RunConfig) -> tuple[int, ...]:
    """The batch sizes the SUT sends in this run, ascending: SingleStream 1; Offline `batch_size`
    (the one smaller remainder batch at the end is padded up by backends that need fixed shapes);
    Server every size from 1 to `max_batch_size`."""
    if cfg.run.scenario == "SingleStream":
        return (1,)
    if cfg.run.scenario == "Offline":
        return (cfg.sut.batch_size,)
    return tuple(range(1, cfg.sut.max_batch_size + 1))


def _backend_options(cfg: RunConfig) -> tuple[type, Any]:
    """The chosen backend's class and its options, checked: an unknown backend, an unknown option or a
    wrong type is a ConfigError."""
    if cfg.run.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {cfg.run.backend!r}; choose one of: {', '.join(sorted(BACKENDS))}")
    try:
        cls = backend_class(cfg.run.backend)
    except BackendError as exc:
        raise ConfigError(str(exc)) from exc
    values = dict(cfg.backend)
    # Backends with fixed shapes (torch-compile, tensorrt) warm up every batch size the SUT sends;
    # `--set backend.warmup_batch_sizes=[...]` chooses others (smaller batches are padded up).
    if "warmup_batch_sizes" not in values and any(
        f.name == "warmup_batch_sizes" for f in dataclasses.fields(cls.Options)
    ):
        values["warmup_batch_sizes"] = list(sut_batch_sizes(cfg))
    try:
        return cls, build_options(cls.Options, values)
    except BackendError as exc:  # an option value the backend refuses
        raise ConfigError(str(exc)) from exc


def make_backend(cfg: RunConfig, spec: ModelSpec) -> Backend:
    cls, options = _backend_options(cfg)
    try:
        return cls(spec, options)  # type: ignore[no-any-return]
    except BackendError as exc:  # an option value the backend refuses
        raise ConfigError(str(exc)) from exc


def _check_weights(cfg: RunConfig) -> None:
    m = cfg.model
    if m.weights == "random" and cfg.run.mode == "accuracy":
        raise ConfigError(
            f"accuracy mode needs trained weights, but model.weights is 'random' (model {m.name!r}): its "
            "images are noise; use --set model.weights=pretrained with --model-path DIR"
        )
    if m.weights == "random" and m.path:
        raise ConfigError(
            f"model.weights is 'random', which builds the model, but a model folder was given too ({m.path!r}); "
            "drop --model-path, or use --set model.weights=pretrained"
        )


def validate_config(cfg: RunConfig) -> Any:
    """Everything about the configuration that can be checked in a second, before the inputs are prepared
    (the model folder, prompts and latents take seconds): the backend and its options, a CUDA device this
    machine lacks, the latent shape, and LoadGen's settings. Returns the LoadGen TestSettings."""
    _check_weights(cfg)
    _, options = _backend_options(cfg)
    devices = [d.strip() for d in cfg.workers.devices.split(",") if d.strip()] or [str(getattr(options, "device", ""))]
    if not cfg.workers.ray_address and any(d.startswith("cuda") for d in devices):  # Ray actors may run elsewhere
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {', '.join(devices)} requested but torch.cuda.is_available() is False on this machine "
                f"(torch {torch.__version__}); no silent fallback to the CPU: set backend.device=cpu to run there"
            )
    latent_shape(cfg)
    return lgs.build_test_settings(cfg)


def direct_batch(prompts: PromptSet, latents: LatentSource, indices: Sequence[int]) -> PromptBatch:
    return PromptBatch(
        sample_indices=tuple(indices),
        prompts=tuple(prompts.texts[i] for i in indices),
        negative_prompts=tuple(prompts.negative_prompts[i] for i in indices),
        latents=latents.for_samples(indices),
    )


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


def start_workers(
    cfg: RunConfig, spec: ModelSpec, warm: PromptBatch, phases: _Phases, trace: TraceSettings | None = None
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
        return [InProcessWorker(backend, tracer=make_tracer(trace, "worker-0"))]

    options = backend.options  # type: ignore[attr-defined]
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
    phases = _Phases()
    # 0. The whole configuration, checked before anything slow (LoadGen settings included).
    settings = validate_config(cfg)
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
    manifest["model"]["weights_source"] = _weights_source(cfg, spec)
    manifest["profile"] = profiling.describe(cfg.profile, run_dir)
    manifest["valid_for_submission"] = False  # updated with the summary
    write_json(run_dir / "manifest.json", manifest)

    # 5. Drive LoadGen.
    hook = None
    if cfg.run.mode == "accuracy":
        hook = _PngSaver(
            run_dir / "images", cfg.accuracy.sample_images, [qsl.category(i) for i in range(qsl.total_count)]
        )
    sut = SystemUnderTest(qsl, Batcher(policy), workers, image_hook=hook, retries=cfg.workers.retries)
    # Energy (NVML) over the timed run, on this machine's GPUs only (Ray actors may run elsewhere).
    devices = [] if cfg.workers.ray_address else [str(w.describe().get("device", "")) for w in workers]
    meter = energy.start_meter(devices)
    outcome = drive_loadgen(cfg, sut, qsl, settings, run_dir, progress)
    energy_used = meter.stop(sum(k * v for k, v in sut.stats.batch_sizes.items()))
    phases.seconds["run"] = round(outcome["wall_s"], 3)
    log.info("run: %.2f s", outcome["wall_s"])
    warm_s = None
    diversity = None  # quality: prompts x seeds images through the still-loaded workers, off LoadGen's clock
    if quality_plan is not None and sut.failure is None and not outcome["interrupted"] and not outcome["loadgen_alive"]:
        diversity = phases.timed("diversity images", lambda: quality_step.generate(quality_plan, workers, run_dir))
    if not outcome["loadgen_alive"]:
        if sut.failure is None and not outcome["interrupted"]:  # warm time to first image: one batch-1 call
            warm_s = first_image.warm_latency_s(workers[0], direct_batch(prompts, latents, [0]))
        for worker in workers:
            worker.close()

    # 6. Read LoadGen's logs and summarise.
    summary = _summarise(cfg, run_dir, sut, blockers, phases.seconds, outcome)
    summary["weights"] = cfg.model.weights
    summary["profile"] = profiling.outputs(cfg.profile, run_dir)
    write_sample_latencies(run_dir / "sample_latencies.csv", sut.stats.sample_latencies)
    # 7. Accuracy mode: score mlperf_log_accuracy.json (CLIP, FID) -> accuracy.txt, accuracy.json.
    if accuracy_plan is not None and summary["status"] == "ok":
        summary["accuracy"] = phases.timed(
            "accuracy", lambda: accuracy_step.score(accuracy_plan, run_dir, prompts.texts, prompts.categories)
        )
        summary["phases_s"] = phases.seconds
    if diversity is not None:  # LPIPS diversity of those images -> quality.json
        summary["quality"] = phases.timed("quality", lambda: quality_step.score(diversity, run_dir))
        summary["phases_s"] = phases.seconds
    summary["time_to_first_image_s"] = first_image.time_to_first_image(sut.stats.first_image_unix_s, warm_s)
    summary["energy"] = energy_used
    summary["cost"] = cost.for_run(cfg, summary, run_dir)
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


def _weights_source(cfg: RunConfig, spec: ModelSpec) -> dict[str, Any]:
    """Where the weights came from, for the manifest: a folder, a builder, or random (flagged)."""
    if cfg.model.weights == "random":
        return {
            "kind": "random",
            "warning": "architecture-only run: random weights, images are noise; never valid for accuracy",
            "components": spec.components,
            "seed": 0,
        }
    if cfg.model.builder and not cfg.model.path:
        return {"kind": "builder", "builder": cfg.model.builder, "folder": spec.path}
    return {"kind": "folder", "folder": spec.path, "hub_id": cfg.model.hub_id or None}


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
    log_settings.enable_trace = cfg.profile.loadgen_trace  # LoadGen's own trace: large, off unless asked for
    # An explicit audit file, present only for compliance tests (run.audit_config): LoadGen would
    # otherwise pick up ./audit.config from the cwd.
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


def write_sample_latencies(path: Path, latencies: Sequence[tuple[int, int]]) -> None:
    """One row per answered sample, in completion order: the report's latency distribution."""
    with path.open("w", encoding="utf-8") as f:
        f.write("sample_index,latency_ms\n")
        f.writelines(f"{i},{ns / 1e6:.3f}\n" for i, ns in latencies)


def _percentiles_ms(values_ns: list[int]) -> dict[str, float]:
    if not values_ns:
        return {}
    a = np.asarray(values_ns, dtype=np.float64) / 1e6
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


PEAK_MEMORY_KEYS = ("cpu_rss_mib", "children_rss_mib", "cuda_allocated_mib", "cuda_reserved_mib")


def headline_memory_mib(mem: dict[str, Any]) -> float | None:
    """The one figure of a peak_memory() dict: CUDA reserved where measured (what the device held), else
    allocated, else the largest resident set (this process or a worker process)."""
    for key in ("cuda_reserved_mib", "cuda_allocated_mib"):
        if mem.get(key) is not None:
            return float(mem[key])
    cpu = [mem[k] for k in ("cpu_rss_mib", "children_rss_mib") if mem.get(k) is not None]
    return float(max(cpu)) if cpu else None


def peak_memory(worker_processes: bool = False) -> dict[str, float | None]:
    """Peak memory so far, in MiB: this process's resident set, the largest finished child process's
    (with worker processes only: any other child, such as `git` for the manifest, reports the parent's
    resident set it was forked with), and, where torch has used CUDA here, the most CUDA memory torch allocated and
    reserved (its caching allocator's footprint: what the device actually held). None where it cannot be
    measured (memory a library allocates outside torch, such as ONNX Runtime's or TensorRT's on a GPU, or
    CUDA memory of worker processes, is not in the CUDA figures)."""
    out: dict[str, float | None] = dict.fromkeys(PEAK_MEMORY_KEYS)
    try:
        import resource
    except ImportError:  # not on POSIX
        resource = None  # type: ignore[assignment]
    if resource is not None:
        unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        out["cpu_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / 2**20, 1)
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if worker_processes else 0
        out["children_rss_mib"] = round(children * unit / 2**20, 1) if children else None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak = max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
        out["cuda_allocated_mib"] = round(peak / 2**20, 1)
        reserved = max(torch.cuda.max_memory_reserved(i) for i in range(torch.cuda.device_count()))
        out["cuda_reserved_mib"] = round(reserved / 2**20, 1)
    return out


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
    verdict = detail.verdict()  # early stopping's reason included: LoadGen leaves result_invalid_reason empty
    blockers = list(blockers)
    if detail.errors:  # LoadGen finished, but its result cannot be trusted
        blockers.append(f"LoadGen logged errors: {'; '.join(detail.errors[:3])}")
    if cfg.run.mode != "performance":
        blockers.append("accuracy runs carry no performance result")
    elif not result_valid:
        blockers.append(f"LoadGen result is {verdict.validity or 'missing'}: {verdict.reason or 'LoadGen errors'}")
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
            "invalid_reason": (verdict.reason or None) if cfg.run.mode == "performance" else None,
            "early_stopping_result": detail.get("early_stopping_result"),
            "early_stopping_met": detail.get("early_stopping_met"),
            "min_duration_met": detail.get("result_min_duration_met"),
            "min_queries_met": detail.get("result_min_queries_met"),
            "errors": detail.errors,
            "warnings": detail.warnings,
        },
        "harness": {
            "queue_delay_ms": _percentiles_ms(stats.queue_delays_ns),
            "batch_time_ms": _percentiles_ms(stats.batch_times_ns),
            # prompts tokenized in LoadGen's load_samples, off the clock (0: inside each timed call)
            "pretokenized_samples": sut.qsl.pretokenized,
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
        "timing": summarise_stages(
            stats.batch_stages,
            stats.steps_ns,
            stats.batch_times_ns,
            stats.handback_ns,
            outcome["wall_s"],
            len(sut.workers),
        ),
        "phases_s": phases,
        "peak_memory": peak_memory(worker_processes=any(isinstance(w, ProcessWorker) for w in sut.workers)),
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
