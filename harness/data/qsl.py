"""The query sample library: sample index -> (prompt, negative prompt, initial latent).

LoadGen decides which samples are resident (`load_samples` / `unload_samples`, outside the timed
path); the SUT asks for batches of resident samples only, so nothing is read or generated while
LoadGen's clock runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from backends.base import PromptBatch
from harness.data.latents import LatentSource
from harness.data.prompts import PromptSet
from harness.errors import ConfigError

log = logging.getLogger(__name__)

# (prompts, negative prompts) -> one prepared object per prompt, or None (see backends.base.PromptPreprocessor)
Preprocessor = Callable[[Sequence[str], Sequence[str]], "list[Any] | None"]


class QuerySampleLibrary:
    def __init__(
        self,
        prompts: PromptSet,
        latents: LatentSource,
        count: int = 0,
        performance_count: int = 0,
    ) -> None:
        available = len(prompts)
        if count < 0 or count > available:
            raise ConfigError(
                f"dataset.count {count} is out of range; the prompt source {prompts.source} "
                f"has {available} samples (0 = all)"
            )
        self.prompts = prompts
        self.latents = latents
        self.total_count = count or available
        if performance_count < 0 or performance_count > self.total_count:
            raise ConfigError(
                f"dataset.performance_sample_count {performance_count} is out of range "
                f"(0 = all {self.total_count} samples)"
            )
        self.performance_count = performance_count or self.total_count
        self._loaded: dict[int, tuple[str, str]] = {}
        self._encoded: dict[int, Any] = {}
        self._preprocess: Preprocessor | None = None
        self.pretokenized = 0  # samples prepared in load_samples (tokenized outside the timed path)
        self._lock = threading.Lock()

    def set_preprocessor(self, preprocess: Preprocessor | None) -> None:
        """Prepare prompts (tokenize, say) in `load_samples`, outside the timed path; the results
        ride along in `PromptBatch.encoded`. Set it before LoadGen starts."""
        self._preprocess = preprocess

    # LoadGen callbacks ---------------------------------------------------------------------------
    def load_samples(self, indices: Sequence[int]) -> None:
        with self._lock:
            for i in indices:
                self._loaded[i] = (self.prompts.texts[i], self.prompts.negative_prompts[i])
        self.latents.preload(indices)
        if self._preprocess is not None and indices:
            encoded = self._preprocess(
                [self.prompts.texts[i] for i in indices], [self.prompts.negative_prompts[i] for i in indices]
            )
            if encoded is not None:
                with self._lock:
                    self._encoded.update(zip(indices, encoded, strict=True))
                    self.pretokenized += len(indices)
        log.debug("loaded %d samples", len(indices))

    def unload_samples(self, indices: Sequence[int]) -> None:
        with self._lock:
            for i in indices:
                self._loaded.pop(i, None)
                self._encoded.pop(i, None)
        self.latents.release(indices)

    # SUT side ------------------------------------------------------------------------------------
    @property
    def loaded_count(self) -> int:
        with self._lock:
            return len(self._loaded)

    def category(self, index: int) -> str:
        return self.prompts.categories[index]

    def batch(self, indices: Sequence[int]) -> PromptBatch:
        with self._lock:
            missing = [i for i in indices if i not in self._loaded]
            if missing:
                raise RuntimeError(f"samples {missing[:8]} were issued but never loaded by LoadGen")
            rows = [self._loaded[i] for i in indices]
            encoded = tuple(self._encoded[i] for i in indices) if all(i in self._encoded for i in indices) else ()
        return PromptBatch(
            sample_indices=tuple(indices),
            prompts=tuple(r[0] for r in rows),
            negative_prompts=tuple(r[1] for r in rows),
            latents=self.latents.for_samples(indices),
            encoded=encoded,
        )
