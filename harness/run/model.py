"""Model resolution: what a run runs on, before any backend loads or LoadGen starts.

The model folder (a local path, a builder, random weights, or the hub's local cache: nothing is downloaded),
the ModelSpec and latent shape a backend gets, the batch sizes the SUT sends, the chosen backend's class
and checked options, and the run's inputs (prompts, latents, QSL).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import Backend, BackendClass, BackendError, ModelSpec, PromptBatch
from backends.registry import BACKENDS, backend_class
from harness.config import RunConfig, build_options
from harness.data.latents import LatentSource
from harness.data.prompts import PromptSet, load_prompts
from harness.data.qsl import QuerySampleLibrary
from harness.errors import ConfigError
from harness.sut.batcher import BatchPolicy

log = logging.getLogger(__name__)

# no local weights: the fake backend runs no model, the http backend asks a service that has its own
BACKENDS_WITHOUT_WEIGHTS = {"fake", "http"}


def resolve_model_path(cfg: RunConfig) -> str:
    """The local diffusers folder for this run ("" when the backend loads no weights or builds them).

    In order: `model.path`; nothing for weight-less backends and `model.weights = "random"`; the
    folder `model.builder` makes in code (the tiny models); the model hub's local cache, if it holds
    `model.hub_id` (looked up offline). Nothing is downloaded: a missing folder is one error line
    saying what to download and where.
    """
    m = cfg.model
    check_weights(cfg)
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


def backend_options(cfg: RunConfig) -> tuple[BackendClass, Any]:
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
    cls, options = backend_options(cfg)
    try:
        return cls(spec, options)
    except BackendError as exc:  # an option value the backend refuses
        raise ConfigError(str(exc)) from exc


def check_weights(cfg: RunConfig) -> None:
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


def direct_batch(prompts: PromptSet, latents: LatentSource, indices: Sequence[int]) -> PromptBatch:
    return PromptBatch(
        sample_indices=tuple(indices),
        prompts=tuple(prompts.texts[i] for i in indices),
        negative_prompts=tuple(prompts.negative_prompts[i] for i in indices),
        latents=latents.for_samples(indices),
    )


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


def weights_source(cfg: RunConfig, spec: ModelSpec) -> dict[str, Any]:
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
