"""Ray actors as workers: one actor per GPU of a Ray cluster (num_gpus=1 each), or N CPU actors.

LoadGen, the batcher and the SUT stay in the driver; each RayWorker is one SUT thread sending a
batch to its actor and waiting for the uint8 images. Set `workers.ray_address`:
- "auto" or "ray://host:port": join an existing cluster (the project must be installed on its nodes);
- "local": start a Ray instance in this process, on this machine's CPUs (and GPUs), for testing.

Ray's own logs (its start-up warnings, Ray Data's per-execution INFO lines) stay off the terminal
unless asked for: `HARNESS_RAY_LOG_LEVEL=INFO` (or DEBUG, WARNING; default ERROR) lets them through.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from backends.base import ImageBatch, ModelSpec, PromptBatch
from harness.errors import ConfigError
from harness.workers.process_pool import RemoteError, WorkerDied, with_threads

log = logging.getLogger(__name__)

RAY_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
RAY_LOG_LEVEL_ENV = "HARNESS_RAY_LOG_LEVEL"


def ray_log_level(value: str | None = None) -> str:
    """The level Ray logs at: `value`, else $HARNESS_RAY_LOG_LEVEL, else ERROR (quiet)."""
    source = "--ray-log-level" if value is not None else RAY_LOG_LEVEL_ENV
    level = (value if value is not None else os.environ.get(RAY_LOG_LEVEL_ENV, "") or "ERROR").upper()
    if level not in RAY_LOG_LEVELS:
        raise ConfigError(f"{source} {level!r} is not a log level; choose one of: {', '.join(RAY_LOG_LEVELS)}")
    return level


def init_ray(address: str, log_level: str) -> Any:
    """Start or join Ray at `address` ("local", "auto", "ray://host:port") logging at `log_level`."""
    # Read by Ray Data whenever it (re)configures its logger, which it does at every execution;
    # its console handler otherwise prints a dozen INFO lines per dataset.
    os.environ["RAY_DATA_LOG_LEVEL"] = log_level
    import ray

    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "logging_level": getattr(logging, log_level),
            # The actors' own stdout/stderr (our workers log through the driver's summary instead).
            "log_to_driver": log_level in ("DEBUG", "INFO"),
        }
        if address == "local":
            # Loopback only: a local test instance has no business on the machine's other addresses.
            ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", **kwargs)
        else:
            ray.init(address=address, **kwargs)
    return ray


class _BackendActor:
    """Runs inside the Ray actor process: builds, loads and warms up one backend."""

    def __init__(self, backend: str, model: ModelSpec, options: Any, warmup: PromptBatch | None, name: str) -> None:
        os.environ["HARNESS_WORKER_NAME"] = name
        from backends.registry import create_backend

        self._backend = create_backend(backend, model, options)
        self._backend.load()
        if warmup is not None:
            self._backend.warmup(warmup)
        self._describe = {**self._backend.describe(), "worker": name, "pid": os.getpid()}

    def describe(self) -> dict[str, Any]:
        return self._describe

    def run(self, batch: PromptBatch) -> ImageBatch:
        return self._backend.generate(batch)

    def preprocess(self, prompts: list[str], negative_prompts: list[str]) -> list[Any] | None:
        preprocess = getattr(self._backend, "preprocess_prompts", None)
        return preprocess(prompts, negative_prompts) if preprocess else None

    def close(self) -> None:
        self._backend.close()


class RayWorker:
    def __init__(self, actor: Any, name: str, backend_name: str) -> None:
        self._actor = actor
        self.name = name
        self.backend_name = backend_name
        self.description: dict[str, Any] = {}

    def run(self, batch: PromptBatch) -> ImageBatch:
        return self._get(self._actor.run.remote(batch))  # type: ignore[no-any-return]

    def preprocess_prompts(self, prompts: Sequence[str], negative_prompts: Sequence[str]) -> list[Any] | None:
        """The QSL's load-time tokenization, run by this actor (one call at a time per actor)."""
        return self._get(self._actor.preprocess.remote(list(prompts), list(negative_prompts)))  # type: ignore[no-any-return]

    def _get(self, ref: Any) -> Any:
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            raise WorkerDied(f"{self.name} (Ray actor) died: {str(exc).splitlines()[0]}") from exc
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            raise RemoteError(f"{type(cause).__name__}: {cause}", str(exc)) from exc

    def describe(self) -> dict[str, Any]:
        return {**self.description, "ray": True}

    def close(self) -> None:
        import ray

        try:
            ray.get(self._actor.close.remote(), timeout=30)
        except Exception:  # the actor may already be dead; it is killed below either way
            pass
        ray.kill(self._actor)


def start_ray_workers(
    address: str,
    backend: str,
    model: ModelSpec,
    options: Any,
    warmup: PromptBatch | None,
    count: int,
    threads_per_worker: int,
    load_timeout_s: float,
) -> list[RayWorker]:
    level = ray_log_level()
    try:
        ray = init_ray(address, level)
    except ImportError as exc:
        raise ConfigError("workers.ray_address needs Ray: pip install -e '.[ray]'") from exc
    gpus = int(ray.cluster_resources().get("GPU", 0))
    on_gpu = gpus > 0 and str(getattr(options, "device", "cpu")).startswith("cuda")
    if on_gpu:
        n = gpus if count == 1 else count  # default: one actor per GPU in the cluster
        actor_cls = ray.remote(num_gpus=1, num_cpus=1)(_BackendActor)
        opts = options  # Ray sets CUDA_VISIBLE_DEVICES per actor, so "cuda" is that actor's GPU
    else:
        n = count
        actor_cls = ray.remote(num_cpus=1)(_BackendActor)
        opts = with_threads(options, threads_per_worker or 1)
    names = [f"ray-worker-{i}" for i in range(n)]
    actors = [actor_cls.remote(backend, model, opts, warmup, name) for name in names]
    workers = [RayWorker(a, name, backend) for a, name in zip(actors, names, strict=True)]
    try:
        descriptions = ray.get([a.describe.remote() for a in actors], timeout=load_timeout_s)
    except Exception as exc:
        for w in workers:
            ray.kill(w._actor)
        cause = getattr(exc, "cause", None) or exc
        raise ConfigError(f"Ray workers could not load backend {backend!r}: {type(cause).__name__}: {cause}") from exc
    for w, d in zip(workers, descriptions, strict=True):
        w.description = d
    log.info("Ray: %d actor(s) on %s", n, f"{gpus} GPU(s)" if on_gpu else "CPUs")
    return workers
