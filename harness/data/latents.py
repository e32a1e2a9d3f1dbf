"""Fixed initial latents for the QSL: from a file, or seeded exactly as diffusers makes them.

MLPerf SDXL uses one latent, shape (1, 4, 128, 128), for every prompt (``mode="shared"``). For
benchmarks on one's own prompts a different latent per sample is often wanted (``mode="per-sample"``):
sample ``i`` gets the seed ``seed + i``, or row ``i`` of an (N, C, h, w) file. Per-sample latents are
made when the QSL loads samples (`LatentSource.preload`), so generation stays off the timed path.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ConfigError

logger = logging.getLogger(__name__)

LATENT_EXTENSIONS = (".npy", ".pt")
LATENT_MODES = ("shared", "per-sample")


def _as_float32_4d(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim != 4:
        raise ConfigError(
            f"latent file {str(path)!r} has shape {tuple(array.shape)}; allowed: a 4-D array (N, C, h, w)"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ConfigError(f"latent file {str(path)!r} has dtype {array.dtype}; allowed: a floating-point dtype")
    if array.dtype != np.float32:
        logger.warning("latent file %s has dtype %s; converting to float32", path, array.dtype)
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ConfigError(f"latent file {str(path)!r} contains NaN or infinite values")
    return array


def load_latent_file(path: str | Path) -> np.ndarray:
    """Load a 4-D latent from ``.npy`` or ``.pt`` (a tensor saved with ``torch.save``) as float32, C-contiguous."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LATENT_EXTENSIONS:
        raise ConfigError(
            f"latent file {str(path)!r} has extension {suffix or '(none)'!r}; allowed: {list(LATENT_EXTENSIONS)}"
        )
    if not path.is_file():
        raise ConfigError(f"latent file {str(path)!r} does not exist or is not a file")

    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ConfigError(f"latent file {str(path)!r} is not a readable .npy array: {exc}") from exc
        if not isinstance(array, np.ndarray):
            raise ConfigError(f"latent file {str(path)!r} holds {type(array).__name__}; allowed: one array")
        return _as_float32_4d(array, path)

    import torch

    try:
        tensor = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file (pickle, zip, runtime errors)
        raise ConfigError(f"latent file {str(path)!r} is not a readable torch file: {exc}") from exc
    if not isinstance(tensor, torch.Tensor):
        raise ConfigError(
            f"latent file {str(path)!r} holds {type(tensor).__name__}; allowed: one tensor saved with torch.save"
        )
    if not tensor.is_floating_point():
        raise ConfigError(f"latent file {str(path)!r} has dtype {tensor.dtype}; allowed: a floating-point dtype")
    if tensor.dim() != 4:
        raise ConfigError(
            f"latent file {str(path)!r} has shape {tuple(tensor.shape)}; allowed: a 4-D tensor (N, C, h, w)"
        )
    if tensor.dtype != torch.float32:
        logger.warning("latent file %s has dtype %s; converting to float32", path, tensor.dtype)
    return _as_float32_4d(tensor.detach().to(torch.float32).contiguous().numpy(), path)


def seeded_latents(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Standard-normal float32 latents, as diffusers' ``randn_tensor`` makes them on the CPU.

    Equivalent to ``randn_tensor(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)``,
    which is how MLPerf made ``latents.npy`` (shape (1, 4, 128, 128), seed 0).
    """
    import torch

    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    latents = torch.randn(tuple(shape), generator=generator, device="cpu", dtype=torch.float32)
    return np.ascontiguousarray(latents.numpy())


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LatentSource:
    """The initial latent of each QSL sample.

    ``shape`` is ONE sample's latent (C, h, w). With ``file`` set, the latents come from it and
    ``seed`` is not used; with ``file=""`` they are seeded.

    - ``shared``: one (1, C, h, w) latent for every sample (the MLPerf SDXL rule).
    - ``per-sample``: sample ``i`` gets ``seeded_latents((1, C, h, w), seed + i)``, or row ``i`` of an
      (N, C, h, w) file.

    `preload` / `release` follow the QSL's load and unload; `for_samples` on an index that was not
    preloaded computes it on demand (correct, but on the timed path; a warning says so once).
    """

    def __init__(self, shape: Sequence[int], mode: str = "shared", *, file: str = "", seed: int = 0) -> None:
        shape = tuple(shape)
        if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ConfigError(f"latent shape {shape} is invalid; allowed: three positive integers (C, h, w)")
        if mode not in LATENT_MODES:
            raise ConfigError(f"latent mode {mode!r} is invalid; allowed: {list(LATENT_MODES)}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"latent seed {seed!r} is invalid; allowed: an integer")

        self.shape: tuple[int, int, int] = shape  # type: ignore[assignment]
        self.mode = mode
        self.file = str(file)
        self.seed = seed
        self._file_sha256 = ""
        self._lock = threading.Lock()
        self._cache: dict[int, np.ndarray] = {}
        self._warned_on_demand = False
        self._shared: np.ndarray | None = None
        self._rows: np.ndarray | None = None

        sample_shape = (1, *shape)
        if self.file:
            path = Path(self.file)
            array = load_latent_file(path)
            self._file_sha256 = _file_sha256(path)
            if mode == "shared":
                if array.shape != sample_shape:
                    raise ConfigError(
                        f"latent file {self.file!r} has shape {array.shape}; shared mode needs {sample_shape}"
                    )
                self._shared = array
            else:
                if array.shape[1:] != shape:
                    raise ConfigError(
                        f"latent file {self.file!r} has shape {array.shape}; "
                        f"per-sample mode needs (N, {', '.join(map(str, shape))})"
                    )
                self._rows = array
            logger.info("latents (%s) from %s, shape %s (seed not used)", mode, self.file, array.shape)
        elif mode == "shared":
            self._shared = seeded_latents(sample_shape, seed)
            logger.info("latents (shared) seeded with %d, shape %s", seed, sample_shape)
        else:
            logger.info("latents (per-sample) seeded with %d + sample index, shape %s each", seed, sample_shape)

    # -- QSL hooks ---------------------------------------------------------------------------------

    def preload(self, indices: Sequence[int]) -> None:
        """Make (and keep) the latents of these samples; a no-op for shared or file latents beyond checks."""
        for index in indices:
            self._check_index(index)
            if self.mode == "per-sample" and self._rows is None:
                with self._lock:
                    if index not in self._cache:
                        self._cache[index] = self._seeded(index)

    def release(self, indices: Sequence[int]) -> None:
        """Forget the latents of these samples (an index that was not loaded is ignored)."""
        with self._lock:
            for index in indices:
                self._cache.pop(index, None)

    @property
    def cached_indices(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._cache)

    # -- batches -----------------------------------------------------------------------------------

    def for_samples(self, indices: Sequence[int]) -> np.ndarray:
        """The latents of these samples, in order: float32 (len(indices), C, h, w), C-contiguous."""
        indices = list(indices)
        for index in indices:
            self._check_index(index)
        if self._shared is not None:
            return np.ascontiguousarray(np.repeat(self._shared, len(indices), axis=0))
        if self._rows is not None:
            return np.ascontiguousarray(self._rows[np.asarray(indices, dtype=np.int64).reshape(-1)])

        out = np.empty((len(indices), *self.shape), dtype=np.float32)
        for position, index in enumerate(indices):
            with self._lock:
                cached = self._cache.get(index)
            if cached is None:
                if not self._warned_on_demand:
                    self._warned_on_demand = True
                    logger.warning("latent of sample %d was not preloaded; generating it on the timed path", index)
                cached = self._seeded(index)
            out[position] = cached[0]
        return out

    def describe(self) -> dict[str, Any]:
        """What goes into the run manifest."""
        return {
            "mode": self.mode,
            "shape": list(self.shape),
            "file": self.file,
            "file_sha256": self._file_sha256,
            "seed": None if self.file else self.seed,
        }

    # -- helpers -----------------------------------------------------------------------------------

    def _seeded(self, index: int) -> np.ndarray:
        return seeded_latents((1, *self.shape), self.seed + index)

    def _check_index(self, index: int) -> None:
        if index < 0:
            raise ValueError(f"sample index {index} is negative")
        if self._rows is not None and index >= self._rows.shape[0]:
            raise ConfigError(
                f"sample index {index} is beyond latent file {self.file!r}, which has {self._rows.shape[0]} rows "
                f"(allowed: 0..{self._rows.shape[0] - 1})"
            )
