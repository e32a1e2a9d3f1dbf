"""Streaming reader for LoadGen's `mlperf_log_accuracy.json`.

LoadGen writes one JSON array whose entries are `{ "seq_id" : N, "qsl_idx" : I, "data" : "<hex>" }`,
the data being the response bytes in upper-case hex: for a text-to-image SUT the uint8 H x W x 3 image
(3,145,728 bytes, 6.3 MB of hex, per SDXL sample; the full SDXL log is about 31 GB). The MLPerf scorer
`json.load`s the whole file; this reader never holds more than about two entries: it reads the file in
chunks, decodes one entry at a time with `json.JSONDecoder.raw_decode`, and hashes the bytes as they
pass (the SHA-256 that goes on accuracy.txt's `hash=` line).

Like the MLPerf scorer, the first entry of each `qsl_idx` is the one scored and later duplicates are
skipped; a duplicate whose bytes differ from the first is counted and logged (the backend is not
deterministic for that sample).

Two decoders give the same samples, hash and errors: the native one (`harness_native._accuracy_log`,
native/accuracy_log/, driven by accuracy/_native_log.py: C++ decoding on one core while the SHA-256 runs
on the other) wherever it is built, and this module's Python parser, which runs where it is not and
takes over from the native decoder at the first thing that is not LoadGen's plain layout (every error
message therefore comes from the Python parser). `decoder=` or T2I_HARNESS_LOG_DECODER picks one
(auto | native | python); `stats.decoder` says which ran.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from io import BufferedIOBase
from pathlib import Path
from typing import Any

import numpy as np

from accuracy import _native_log
from accuracy.errors import AccuracyError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
# An entry that still does not parse once this much is buffered is malformed, not merely long: stop
# before a broken 31 GB log is read into memory.
MIN_ENTRY_LIMIT_CHARS = 64 << 20
_WHITESPACE = " \t\r\n"
DECODERS = ("auto", "native", "python")
DECODER_ENV = "T2I_HARNESS_LOG_DECODER"


@dataclass(frozen=True)
class LogSample:
    qsl_idx: int
    image: np.ndarray  # uint8 H x W x 3, read-only (a view of the decoded bytes)


@dataclass
class LogStats:
    """What the reader saw; complete once iteration has finished."""

    entries: int = 0  # entries read, duplicates included
    unique: int = 0
    duplicates: int = 0
    differing_duplicates: list[int] = field(default_factory=list)  # qsl_idx whose repeat had other bytes
    size_bytes: int = 0
    sha256: str = ""  # of the whole file; set when the reader reaches its end
    decoder: str = ""  # which decoder read the log: "native" or "python"
    python_from_byte: int | None = None  # where the native decoder handed the rest to the Python parser


def _shape_hint(n_bytes: int) -> str:
    side = math.isqrt(n_bytes // 3) if n_bytes % 3 == 0 else 0
    return f" ({side} x {side} x 3 would fit)" if side and side * side * 3 == n_bytes else ""


class AccuracyLogReader:
    """Iterate the unique samples of an accuracy log: `for sample in AccuracyLogReader(path, h, w)`.

    `stats` fills in as iteration goes; `stats.sha256` is set once the whole file has been read.
    Errors (empty log, truncated file, a malformed entry, a wrong image size) raise AccuracyError
    with one line naming the file, the entry and what was expected.
    """

    def __init__(
        self, path: str | Path, height: int, width: int, chunk_bytes: int = CHUNK_BYTES, decoder: str | None = None
    ) -> None:
        self.path = Path(path)
        self.height, self.width = height, width
        self.image_bytes = height * width * 3
        self.chunk_bytes = chunk_bytes
        self.entry_limit_chars = max(MIN_ENTRY_LIMIT_CHARS, 4 * self.image_bytes + 4096)
        self.decoder = self._choose_decoder(decoder if decoder is not None else os.environ.get(DECODER_ENV, "auto"))
        self.stats = LogStats()
        self._ascii_so_far = True

    @staticmethod
    def _choose_decoder(wanted: str) -> str:
        if wanted not in DECODERS:
            raise AccuracyError(f"accuracy log decoder {wanted!r} (decoder= or {DECODER_ENV}): allowed are {DECODERS}")
        native = _native_log.native_module()
        if wanted == "native" and native.module is None:
            raise AccuracyError(f"accuracy log decoder 'native' was asked for, but {native.reason}")
        return "native" if wanted != "python" and native.module is not None else "python"

    def _fail(self, message: str) -> AccuracyError:
        return AccuracyError(f"accuracy log {str(self.path)!r}: {message}")

    def __iter__(self) -> Iterator[LogSample]:
        # qsl_idx -> where its first entry is (byte offset), so that a duplicate is compared with the first
        # entry's bytes read again: exact, and nothing to compute for the (usual) log without duplicates.
        # Where the offset is not a byte offset (the Python parser counts characters, and the log had
        # non-ASCII text before), a digest of the first entry's bytes instead.
        firsts: dict[int, int | bytes] = {}
        for offset, exact, sample in self._samples():
            first = firsts.get(sample.qsl_idx)
            if first is None:
                firsts[sample.qsl_idx] = offset if exact else _digest(sample.image)
                self.stats.unique += 1
                yield sample
                continue
            self.stats.duplicates += 1
            if sample.qsl_idx in self.stats.differing_duplicates:
                continue
            same = (
                self._image_at(first) == sample.image.tobytes()
                if isinstance(first, int)
                else first == _digest(sample.image)
            )
            if not same:
                self.stats.differing_duplicates.append(sample.qsl_idx)
                log.warning(
                    "accuracy log: qsl_idx %d appears again with different image bytes; "
                    "scoring the first, as the MLPerf scorer does",
                    sample.qsl_idx,
                )

    def every_sample(self) -> Iterator[LogSample]:
        """Every entry in file order, duplicates included (what TEST01 counts); raises on an empty log."""
        for _, _, sample in self._samples():
            yield sample

    def _samples(self) -> Iterator[tuple[int, bool, LogSample]]:
        """(offset, whether it is a byte offset, sample) per entry; raises on an empty log."""
        self.stats = LogStats(decoder=self.decoder)
        if not self.path.is_file():
            raise self._fail("file not found")
        self.stats.size_bytes = self.path.stat().st_size
        shape = (self.height, self.width, 3)
        for offset, exact, qsl_idx, data in self._raw_entries():
            yield offset, exact, LogSample(qsl_idx, data.reshape(shape))
        if self.stats.entries == 0:
            raise self._fail("has no entries (an empty JSON array): LoadGen logged no responses")

    def _raw_entries(self) -> Iterator[tuple[int, bool, int, np.ndarray]]:
        """(offset, whether it is a byte offset, qsl_idx, read-only uint8 image bytes) per entry."""
        sha = hashlib.sha256()
        with self.path.open("rb") as f:
            start, state, hashed = 0, "start", 0
            if self.decoder == "native":
                native = _native_log.decode(f, sha, self.image_bytes, self.chunk_bytes)
                while True:
                    try:
                        offset, qsl_idx, data = next(native)
                    except StopIteration as done:
                        handover: _native_log.Handover | None = done.value
                        break
                    self.stats.entries += 1
                    yield offset, True, qsl_idx, data
                if handover is None:
                    self.stats.sha256 = sha.hexdigest()
                    return
                start, state, hashed = handover.offset, handover.state, handover.hashed_bytes
                self.stats.python_from_byte = start
                log.info("accuracy log: the Python parser reads on from byte %d (%s)", start, handover.reason)
                f.seek(start)
            for offset, entry in self._parse(f, sha, start, state, hashed):
                yield offset, self._ascii_so_far, *self._check(offset, entry)

    def _image_at(self, offset: int) -> bytes:
        """The image bytes of the (valid) entry at byte `offset`, read again."""
        decoder, text = json.JSONDecoder(), ""
        utf8 = codecs.getincrementaldecoder("utf-8")()
        with self.path.open("rb") as f:
            f.seek(offset)
            while True:
                chunk = f.read(max(self.chunk_bytes, 2 * self.image_bytes + 256))
                text += utf8.decode(chunk, final=not chunk)
                try:
                    entry, _ = decoder.raw_decode(text)
                    break
                except json.JSONDecodeError:
                    if not chunk:
                        raise self._fail(f"changed while it was read (the entry at byte {offset})") from None
        return bytes.fromhex(entry["data"]) if isinstance(entry, dict) and isinstance(entry.get("data"), str) else b""

    # Parsing (the Python decoder) -----------------------------------------------------------------
    def _entries(self) -> Iterator[tuple[int, dict[str, object]]]:
        """(byte offset, entry) for each entry of the whole file, by the Python parser alone."""
        with self.path.open("rb") as f:
            yield from self._parse(f, hashlib.sha256(), 0, "start", 0)

    def _parse(
        self, f: BufferedIOBase, sha: Any, start: int, state: str, hashed_until: int
    ) -> Iterator[tuple[int, dict[str, object]]]:
        """(byte offset, entry) for each entry of the top-level array, reading `f` chunk by chunk from
        byte `start` (where the array is in `state`: start, expect_entry, after_entry or after_close).
        `sha` is fed the bytes past `hashed_until` (the native decoder hashed those before)."""
        decoder = json.JSONDecoder()
        utf8 = codecs.getincrementaldecoder("utf-8")()
        buf, pos, consumed, eof = "", 0, start, False  # consumed: characters dropped before buf[0]
        read_to = start  # the file offset of the next read
        self._ascii_so_far = True  # offsets are byte offsets while the text read is ASCII

        def more(min_chars: int) -> bool:
            """Append at least `min_chars` characters (or the rest of the file) to buf."""
            nonlocal buf, pos, consumed, eof, read_to
            if eof:
                return False
            buf, consumed, pos = buf[pos:], consumed + pos, 0
            want = max(self.chunk_bytes, min_chars)
            while want > 0:
                chunk = f.read(want)
                if not chunk:
                    eof = True
                    buf += utf8.decode(b"", final=True)
                    self.stats.sha256 = sha.hexdigest()
                    break
                if read_to + len(chunk) > hashed_until:
                    sha.update(memoryview(chunk)[max(0, hashed_until - read_to) :])
                read_to += len(chunk)
                self._ascii_so_far = self._ascii_so_far and chunk.isascii()
                buf += utf8.decode(chunk)
                want -= len(chunk)
            return True

        def skip_space() -> str:
            """The next non-blank character ('' at the end of the file)."""
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in _WHITESPACE:
                    pos += 1
                if pos < len(buf):
                    return buf[pos]
                if not more(0):
                    return ""

        if state == "start":
            first = skip_space()
            if first == "":
                raise self._fail("is empty (0 entries, no JSON array): did the run finish in accuracy mode?")
            if first != "[":
                raise self._fail(f"is not a LoadGen accuracy log: expected '[' at byte 0, found {first!r}")
            pos += 1
            state = "expect_entry"
        if state == "after_close":
            if skip_space() != "":
                raise self._fail(f"has data after the closing ']' at byte {consumed + pos}")
            return
        expect_entry = state == "expect_entry"  # after '[' or ','
        while True:
            c = skip_space()
            if c == "":
                raise self._fail(
                    f"is truncated: it ends after {self.stats.entries} entries without the closing ']' "
                    "(was the run killed while LoadGen was writing it?)"
                )
            if c == "]" and (self.stats.entries == 0 or not expect_entry):
                pos += 1
                if skip_space() != "":
                    raise self._fail(f"has data after the closing ']' at byte {consumed + pos}")
                return
            if c == "," and not expect_entry:
                pos += 1
                expect_entry = True
                continue
            if c != "{" or not expect_entry:
                raise self._fail(f"unexpected {c!r} at byte {consumed + pos} after {self.stats.entries} entries")
            start = consumed + pos
            while True:
                try:
                    entry, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    if len(buf) - pos > self.entry_limit_chars:
                        raise self._fail(
                            f"entry {self.stats.entries} at byte {start} is not valid JSON ({exc.msg})"
                        ) from None
                    if not more(len(buf) - pos):  # double the pending entry text: a long entry costs O(size)
                        raise self._fail(
                            f"is truncated: entry {self.stats.entries} at byte {start} is incomplete "
                            f"({exc.msg}); the file ends at byte {self.stats.size_bytes}"
                        ) from None
            pos = end
            self.stats.entries += 1
            expect_entry = False
            if not isinstance(entry, dict):
                raise self._fail(f"entry {self.stats.entries - 1} at byte {start} is not a JSON object")
            yield start, entry

    def _check(self, offset: int, entry: dict[str, object]) -> tuple[int, np.ndarray]:
        """The entry's qsl_idx and image bytes (read-only uint8), or the error that names what is wrong."""
        n = self.stats.entries - 1
        idx, data = entry.get("qsl_idx"), entry.get("data")
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            raise self._fail(f"entry {n} at byte {offset} has no valid 'qsl_idx' (got {idx!r})")
        if not isinstance(data, str):
            raise self._fail(f"entry {n} (qsl_idx {idx}) has no 'data' hex string")
        try:
            raw = bytes.fromhex(data)
        except ValueError:
            raise self._fail(f"entry {n} (qsl_idx {idx}): 'data' is not hex") from None
        if len(raw) != self.image_bytes:
            raise self._fail(
                f"entry {n} (qsl_idx {idx}) has {len(raw)} bytes; expected {self.image_bytes} = "
                f"{self.height} x {self.width} x 3 (the configured image shape){_shape_hint(len(raw))}"
            )
        return idx, np.frombuffer(raw, dtype=np.uint8)

    def _decode(self, offset: int, entry: dict[str, object]) -> LogSample:
        """One entry of _entries() as a sample (harness/mlperf/compliance.py reads every entry this way)."""
        idx, data = self._check(offset, entry)
        return LogSample(idx, data.reshape(self.height, self.width, 3))


def _digest(image: np.ndarray) -> bytes:
    return hashlib.blake2b(image.data, digest_size=16).digest()


def log_sha256(path: str | Path) -> str:
    """SHA-256 of a whole file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_accuracy_log(path: str | Path, samples: Iterable[tuple[int, np.ndarray]]) -> int:
    """Write (qsl_idx, uint8 image) pairs in LoadGen's accuracy-log format, streaming; returns the count.

    For tests and the scoring benchmark: byte-for-byte the layout LoadGen writes (upper-case hex,
    one entry per line, `seq_id` counting from 0).
    """
    count = 0
    with Path(path).open("w", encoding="ascii") as f:
        f.write("[")
        for seq, (idx, image) in enumerate(samples):
            hexdata = np.ascontiguousarray(image, dtype=np.uint8).tobytes().hex().upper()
            f.write(f'{"," if seq else ""}\n{{ "seq_id" : {seq}, "qsl_idx" : {idx}, "data" : "{hexdata}" }}')
            count += 1
        f.write("\n]\n")
    return count
