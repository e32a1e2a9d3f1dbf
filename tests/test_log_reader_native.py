"""The native accuracy-log decoder (harness_native._accuracy_log) against the Python one: the same samples,
stats, SHA-256 and error messages on random logs, LoadGen's layout and its variants, and every truncation
and corruption of a small log. The C++ unit test (ctest: accuracy_log_test) covers the decoder alone.

Skipped where the extension is not built (the Python decoder is then the only one and
tests/test_accuracy_log_reader.py covers it); T2I_HARNESS_REQUIRE_NATIVE=1 turns that skip into a failure.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accuracy._native_log import native_module
from accuracy.errors import AccuracyError
from accuracy.log_reader import AccuracyLogReader, write_accuracy_log

NATIVE = native_module()
if NATIVE.module is None:
    if os.environ.get("T2I_HARNESS_REQUIRE_NATIVE") == "1":
        raise RuntimeError(f"T2I_HARNESS_REQUIRE_NATIVE=1 but {NATIVE.reason}")
    pytest.skip(NATIVE.reason, allow_module_level=True)


@dataclass
class Outcome:
    samples: list[tuple[int, bytes]] = field(default_factory=list)
    error: str = ""
    stats: tuple = ()
    decoder: str = ""
    python_from_byte: int | None = None


def _read(path: Path, h: int, w: int, decoder: str, chunk_bytes: int) -> Outcome:
    reader = AccuracyLogReader(path, h, w, chunk_bytes=chunk_bytes, decoder=decoder)
    out = Outcome()
    try:
        for s in reader:
            assert s.image.shape == (h, w, 3) and s.image.dtype == np.uint8 and not s.image.flags.writeable
            out.samples.append((s.qsl_idx, s.image.tobytes()))
    except AccuracyError as exc:
        out.error = str(exc)
    st_ = reader.stats
    out.stats = (st_.entries, st_.unique, st_.duplicates, st_.differing_duplicates, st_.size_bytes)
    if not out.error:
        out.stats += (st_.sha256,)
    out.decoder, out.python_from_byte = st_.decoder, st_.python_from_byte
    return out


def _both(path: Path, h: int = 2, w: int = 2, chunk_bytes: int = 1 << 20, native_chunk: int | None = None) -> Outcome:
    """Read with both decoders; they must agree. Returns the native outcome."""
    python = _read(path, h, w, "python", chunk_bytes)
    native = _read(path, h, w, "native", native_chunk or chunk_bytes)
    assert (native.samples, native.error, native.stats) == (python.samples, python.error, python.stats)
    assert (python.decoder, native.decoder) == ("python", "native")
    return native


def _image(seed: int, h: int = 2, w: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _render(entries: list[tuple[int, np.ndarray]], rng: random.Random, style: str) -> str:
    """A log in LoadGen's layout ("loadgen", as write_accuracy_log writes it) or a valid variant of it."""
    if style == "loadgen":
        parts = [
            f'{"," if i else ""}\n{{ "seq_id" : {i}, "qsl_idx" : {idx}, "data" : "{img.tobytes().hex().upper()}" }}'
            for i, (idx, img) in enumerate(entries)
        ]
        return "[" + "".join(parts) + "\n]\n"

    def ws() -> str:
        return "".join(rng.choice(" \t\r\n") for _ in range(rng.randint(0, 3)))

    items = []
    for i, (idx, img) in enumerate(entries):
        hexdata = img.tobytes().hex()
        case = rng.choice(("lower", "upper", "mixed"))
        if case != "lower":
            hexdata = hexdata.upper() if case == "upper" else "".join(rng.choice((c, c.upper())) for c in hexdata)
        members = [("qsl_idx", str(idx)), ("data", f'"{hexdata}"')]
        if rng.random() < 0.7:
            members.append(("seq_id", str(i)))
        rng.shuffle(members)
        body = f"{ws()},{ws()}".join(f'"{k}"{ws()}:{ws()}{v}' for k, v in members)
        items.append(f"{{{ws()}{body}{ws()}}}")
    return f"{ws()}[{ws()}" + f"{ws()},{ws()}".join(items) + f"{ws()}]{ws()}"


# Random logs ---------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2)), min_size=1, max_size=12),
    st.sampled_from(("loadgen", "variant")),
    st.integers(1, 200),
    st.integers(0, 1 << 30),
)
def test_random_logs_read_the_same_with_both_decoders(tmp_path_factory, entries, style, chunk_bytes, seed) -> None:
    rng = random.Random(seed)
    path = tmp_path_factory.mktemp("native") / "log.json"
    path.write_text(_render([(idx, _image(s)) for idx, s in entries], rng, style))
    native = _both(path, chunk_bytes=chunk_bytes)
    assert native.error == ""
    assert native.python_from_byte is None  # all of it was the plain layout: the native decoder read it all
    expected: dict[int, int] = {}
    for idx, s in entries:
        expected.setdefault(idx, s)
    assert native.samples == [(idx, _image(expected[idx]).tobytes()) for idx in expected]
    assert native.stats[-1] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_duplicates_are_counted_and_compared_the_same(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    write_accuracy_log(path, [(1, _image(1)), (0, _image(0)), (1, _image(1)), (1, _image(9)), (0, _image(0))])
    native = _both(path)
    assert native.stats[:4] == (5, 2, 3, [1])


def test_duplicates_after_non_ascii_text_are_compared_too(tmp_path: Path) -> None:
    """After non-ASCII text the Python parser's offsets count characters: the first entry's digest is kept."""
    entries = [(1, _image(1)), (0, _image(0)), (1, _image(1)), (1, _image(9))]
    lines = [f'{{ "qsl_idx" : {i}, "data" : "{img.tobytes().hex()}" }}' for i, img in entries]
    lines[0] = lines[0].replace(" }", ', "note" : "\u00e9 é" }')
    path = tmp_path / "log.json"
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    native = _both(path, chunk_bytes=9)
    assert native.stats[:4] == (4, 2, 2, [1]) and native.python_from_byte == 2


def test_entries_larger_than_the_chunks_and_the_default_chunk(tmp_path: Path) -> None:
    """64 x 64 images (24.6 KB of hex each) in 1000-byte chunks, and the same log in one chunk."""
    path = tmp_path / "log.json"
    write_accuracy_log(path, [(i % 7, _image(i, 64, 64)) for i in range(12)])
    _both(path, 64, 64, chunk_bytes=1000)
    _both(path, 64, 64, chunk_bytes=999, native_chunk=1 << 20)


# Edge cases ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "",
        " \n\t\r\n",
        "[]",
        "[\n]\n",
        "[ ] [",
        "{}",
        "[{}]",
        '[{"qsl_idx" : 0, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f"}]',  # one entry, upper- and lower-case hex
        '[{"data":"0a0b0c0d0e0f0a0b0c0d0e0f","qsl_idx":3}]',  # no seq_id, other key order, no spaces
        '[{"qsl_idx" : 0, "data" : "0A0B0C0D0E0F0a0b0c0d0e0"}]',  # odd hex
        '[{"qsl_idx" : 0, "data" : "0A0B0C0D0E0F0a0b0c0d0e0fff"}]',  # one byte too many
        '[{"qsl_idx" : 0, "data" : "0A0B0C0D0E0F0a0b0c0d0e"}]',  # one byte too few
        '[{"qsl_idx" : 0, "data" : "0A0B0C0D0E0F0a0b0c0d0eZZ"}]',  # not hex
        '[{"qsl_idx" : 0, "data" : "0A 0B 0C 0D 0E 0F 0a 0b 0c 0d 0e 0f"}]',  # spaces: bytes.fromhex takes them
        '[{"qsl_idx" : 0, "data" : "\\u0030A0B0C0D0E0F0a0b0c0d0e0f"}]',  # a JSON escape
        '[{"qsl_idx" : 0, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f", "extra" : [1, {"x" : "é"}]}]',  # another key
        '[{"qsl_idx" : 0, "qsl_idx" : 1, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f"}]',  # a repeated key: the last wins
        '[{"qsl_idx" : 1.0, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f"}]',
        '[{"qsl_idx" : -0, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f"}]',
        '[{"qsl_idx" : 01, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f"}]',
        '[{"qsl_idx" : true, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f"}]',
        '[{"qsl_idx" : 123456789012345678901234567890, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f"}]',  # Python's big int
        '[{"qsl_idx" : 0, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f"},]',
        '[{"qsl_idx" : 0, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f"} {"qsl_idx" : 1}]',
        '[{"qsl_idx" : 0, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f"}]x',
        '[,{"qsl_idx" : 0, "data" : "0A0B0C0D0E0F0a0b0c0d0e0f"}]',
        "[1, 2]",
    ],
)
def test_edge_cases_give_the_same_samples_or_the_same_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "log.json"
    path.write_text(text, encoding="utf-8")
    for chunk_bytes in (1, 5, 1 << 20):
        _both(path, chunk_bytes=chunk_bytes)


def test_an_unusual_entry_hands_the_rest_to_the_python_parser(tmp_path: Path) -> None:
    lines = [f'{{ "seq_id" : {i}, "qsl_idx" : {i}, "data" : "{_image(i).tobytes().hex().upper()}" }}' for i in range(4)]
    lines[2] = lines[2].replace('"data"', '"d\\u0061ta"')  # valid JSON the native decoder does not take
    path = tmp_path / "log.json"
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    native = _both(path, chunk_bytes=7)
    assert native.error == "" and [i for i, _ in native.samples] == [0, 1, 2, 3]
    assert native.python_from_byte == path.read_text().index(lines[2])


def test_every_truncation_and_corruption_gives_the_same_outcome(tmp_path: Path) -> None:
    """A 3-entry log cut at every byte, and with each byte replaced by a character that breaks it."""
    good = tmp_path / "good.json"
    write_accuracy_log(good, [(2, _image(2)), (0, _image(0)), (2, _image(5))])
    whole = good.read_bytes()
    path = tmp_path / "log.json"
    errors = set()
    for cut in range(len(whole)):
        path.write_bytes(whole[:cut])
        errors.add(_both(path, chunk_bytes=16).error.partition("': ")[2][:20])
    # "": the cut that drops only the last newline
    assert {"is empty (0 entries,", "is truncated: it end", "is truncated: entry ", ""} <= errors
    rng = random.Random(0)
    for i in range(len(whole)):
        broken = bytearray(whole)
        broken[i] = ord(rng.choice('x]}{,:"\\ 9g'))
        path.write_bytes(bytes(broken))
        _both(path, chunk_bytes=16)


def test_a_missing_file_and_a_bad_decoder_name(tmp_path: Path) -> None:
    assert _both(tmp_path / "absent.json").error.endswith("file not found")
    with pytest.raises(AccuracyError, match=r"decoder 'fast'.*allowed are \('auto', 'native', 'python'\)"):
        AccuracyLogReader(tmp_path / "x.json", 2, 2, decoder="fast")


def test_auto_and_the_environment_pick_the_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.json"
    write_accuracy_log(path, [(0, _image(0))])
    assert AccuracyLogReader(path, 2, 2).decoder == "native"
    monkeypatch.setenv("T2I_HARNESS_LOG_DECODER", "python")
    assert AccuracyLogReader(path, 2, 2).decoder == "python"
