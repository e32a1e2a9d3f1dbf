"""Which SUT answers LoadGen (`sut.kind`): the native core (native/sut/) or the Python SUT.

"auto" picks native when `harness_native._sut_core` imports AND the LoadGen in use is the source-built
one it links (harness/loadgen/module.py): the core calls QuerySamplesComplete in its own LoadGen library,
which must be the one running the test; the wheel's mlperf_loadgen carries a private copy of LoadGen.
"native" where that does not hold is bad input: one line saying why, before the model loads.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from harness.data.qsl import QuerySampleLibrary
from harness.errors import ConfigError
from harness.loadgen.module import SOURCE_MODULE, lg
from harness.sut.batcher import Batcher, BatchPolicy
from harness.sut.python_sut import ImageHook, SystemUnderTest
from harness.workers.in_process import Worker

CORE_MODULE = "harness_native._sut_core"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SutChoice:
    """What the manifest records: the SUT that ran, what was asked for, and why it is that one."""

    kind: str  # "native" or "python"
    requested: str  # sut.kind: "auto", "native" or "python"
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def native_core() -> tuple[ModuleType | None, str]:
    """harness_native._sut_core where the native SUT can run in this process, else None; and why."""
    try:
        core = importlib.import_module(CORE_MODULE)
    except ImportError as exc:
        return None, f"the native SUT core ({CORE_MODULE}) is not built: {exc}"
    if lg.__name__ != SOURCE_MODULE:
        return None, (
            f"the LoadGen in use is {lg.__name__} (the mlcommons-loadgen wheel), not the source-built "
            f"{SOURCE_MODULE} that the native SUT core links (T2I_HARNESS_LOADGEN, docs/native.md)"
        )
    return core, f"{CORE_MODULE} is built and LoadGen is the source build ({SOURCE_MODULE})"


def choose_sut(requested: str) -> SutChoice:
    """Resolve sut.kind; ConfigError (exit code 2) for "native" where it cannot run."""
    if requested == "python":
        return SutChoice("python", requested, "sut.kind=python")
    core, reason = native_core()
    if core is not None:
        return SutChoice("native", requested, reason)
    if requested == "native":
        raise ConfigError(f"sut.kind=native is not available here: {reason}; use sut.kind=python or auto")
    # Where the install built no native parts (no C++ compiler) this is the one place a run says so.
    log.info("sut.kind=auto: the Python SUT, because %s", reason)
    return SutChoice("python", requested, reason)


def make_sut(
    choice: SutChoice,
    qsl: QuerySampleLibrary,
    policy: BatchPolicy,
    workers: Sequence[Worker],
    image_hook: ImageHook | None = None,
    retries: int = 0,
) -> SystemUnderTest:
    """The SUT `choice` names, with the batching policy, workers, image hook and retries of the run."""
    if choice.kind == "native":
        from harness.sut.native_sut import NativeSystemUnderTest

        core, reason = native_core()
        if core is None:
            raise ConfigError(f"sut.kind=native is not available here: {reason}")
        return NativeSystemUnderTest(core, qsl, policy, workers, image_hook=image_hook, retries=retries)
    return SystemUnderTest(qsl, Batcher(policy), workers, image_hook=image_hook, retries=retries)
