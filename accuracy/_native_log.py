"""The native fast path of accuracy/log_reader.py: `harness_native._accuracy_log` (native/accuracy_log/).

The C++ decoder parses and hex-decodes one chunk of the file per `feed` call with the GIL released,
while a second thread runs `hashlib.sha256().update` on the chunk before it (OpenSSL, GIL released
too): decoding and hashing share the two cores instead of running one after the other. It stops at the
first thing that is not the plain layout LoadGen writes (an error, or unusual but valid JSON) and says
where; the Python parser carries on from there, so both decoders give the same samples, hash and errors.

`harness_native` is the package of compiled modules the top-level CMakeLists.txt installs; it is not
the `harness` package, which accuracy/ never imports.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from io import BufferedIOBase
from typing import Any, Protocol

import numpy as np

MODULE = "harness_native._accuracy_log"


class _Hash(Protocol):
    def update(self, data: Any, /) -> None: ...


@dataclass(frozen=True)
class NativeModule:
    module: Any | None  # the extension, or None when it is not built
    reason: str  # why it is not available ("" when it is)


@lru_cache(maxsize=1)
def native_module() -> NativeModule:
    try:
        return NativeModule(importlib.import_module(MODULE), "")
    except ImportError as exc:  # not built here (no compiler at install time): the Python decoder runs
        return NativeModule(None, f"{MODULE} is not built ({exc})")


@dataclass(frozen=True)
class Handover:
    """Where the native decoder stopped: the Python parser resumes at `offset` in `state`."""

    offset: int
    state: str  # start | expect_entry | after_entry | after_close
    hashed_bytes: int  # the hash has seen the file up to here
    reason: str


def decode(
    f: BufferedIOBase, sha: _Hash, image_bytes: int, chunk_bytes: int
) -> Generator[tuple[int, int, np.ndarray], None, Handover | None]:
    """Yield (offset, qsl_idx, read-only uint8 array) per entry from the start of `f`. Returns None once the
    log ended cleanly (the whole file hashed into `sha`), else the Handover."""
    module = native_module().module
    assert module is not None
    decoder = module.Decoder(image_bytes)
    # Two buffers: the hash thread reads one while the next chunk is read into the other.
    buffers = (bytearray(chunk_bytes), bytearray(chunk_bytes))
    hashed = 0
    with ThreadPoolExecutor(1, thread_name_prefix="accuracy-log-sha256") as pool:
        hashing: Future[None] | None = None
        for k in itertools.count():
            buf = buffers[k % 2]
            n = f.readinto(buf)  # the hash of this buffer's previous chunk ended before the last submit
            chunk = memoryview(buf)[:n]
            if hashing is not None:
                hashing.result()  # one chunk in flight: memory stays flat, the order of updates is kept
                hashing = None
            if n == 0:
                break
            hashing = pool.submit(sha.update, chunk)
            hashed += n
            for offset, qsl_idx, data in decoder.feed(chunk):
                data.flags.writeable = False  # as np.frombuffer(bytes) is in the Python decoder
                yield offset, qsl_idx, data
            if decoder.stopped:
                break
        if hashing is not None:
            hashing.result()
    if not decoder.stopped and decoder.finish():
        return None
    return Handover(decoder.stop_offset, decoder.stop_state, hashed, decoder.stop_reason)
