"""What the server serves: the configuration checked, then the backend loaded and warmed up the way a run
does it (harness/run/model.py's inputs, harness/run/benchmark.py's validate_config and start_workers).

The served model's fixed values (size, steps, guidance) are what every request is checked against, and its
latents are the run's: sample i's latent here is the latent an in-process run gives sample i.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np

from harness.config import RunConfig
from harness.data.latents import LatentSource
from harness.errors import ConfigError
from harness.run.benchmark import Phases, start_workers, validate_config
from harness.run.model import batch_policy, direct_batch, prepare_inputs, resolve_model_path
from harness.sut.batcher import BatchPolicy
from harness.workers.in_process import Worker

log = logging.getLogger(__name__)

SCENARIO = "Server"  # the server batches as the Server scenario does: sut.max_batch_size, sut.max_wait_ms


@dataclass(frozen=True)
class ServedModel:
    """The loaded model's fixed values, as /health reports them and requests are checked against."""

    name: str
    backend: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    negative_prompt: str  # the model's default, for requests without one (as the run's prompt pack has it)
    sample_count: int  # sample_index is 0 .. sample_count - 1
    latents_sha256: str  # over every sample's float32 latent, in sample order: (sample_count, C, h, w)
    policy: BatchPolicy
    max_n: int
    max_prompt_chars: int
    max_body_bytes: int
    latents: LatentSource = field(compare=False, repr=False)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def latent_of_sample(self, index: int) -> np.ndarray:
        """Sample `index`'s latent, (1, C, h, w) float32, as the run's QSL gives it."""
        return self.latents.for_samples([index])


def check_config(cfg: RunConfig) -> None:
    """Everything a run checks before loading (backend and options, device, latent shape), in a second."""
    if cfg.run.scenario != SCENARIO:
        raise ConfigError(
            f"run.scenario {cfg.run.scenario!r}: the server batches as the Server scenario does "
            "(sut.max_batch_size, sut.max_wait_ms); leave run.scenario unset"
        )
    validate_config(cfg)
    if cfg.model.path:  # a missing folder is found now, not after the server has bound its port
        resolve_model_path(cfg)


def latents_sha256(latents: LatentSource, count: int) -> str:
    """sha256 of the (count, C, h, w) float32 array of every sample's latent, fed one sample at a time."""
    digest = hashlib.sha256()
    for index in range(count):
        digest.update(latents.for_samples([index]).tobytes())
    return digest.hexdigest()


def load(cfg: RunConfig) -> tuple[ServedModel, list[Worker]]:
    """Prepare the inputs, load and warm up the backend (with the largest batch the server forms)."""
    phases = Phases()
    inputs = phases.timed("prepare inputs", lambda: prepare_inputs(cfg))
    policy = batch_policy(cfg)
    count = inputs.qsl.total_count
    warm = direct_batch(inputs.prompts, inputs.latents, list(range(min(policy.max_batch_size, count))))
    workers = start_workers(cfg, inputs.spec, warm, phases)
    m = cfg.model
    served = ServedModel(
        name=m.name,
        backend=cfg.run.backend,
        width=m.width,
        height=m.height,
        steps=m.steps,
        guidance_scale=m.guidance_scale,
        negative_prompt=m.negative_prompt,
        sample_count=count,
        latents_sha256=phases.timed("hash latents", lambda: latents_sha256(inputs.latents, count)),
        policy=policy,
        max_n=cfg.serve.max_n,
        max_prompt_chars=cfg.serve.max_prompt_chars,
        max_body_bytes=cfg.serve.max_body_bytes,
        latents=inputs.latents,
    )
    return served, workers
