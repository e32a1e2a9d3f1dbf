"""The streaming accuracy-log reader: LoadGen's format, de-duplication, clear errors, bounded memory."""

from __future__ import annotations

import hashlib
import json
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accuracy.errors import AccuracyError
from accuracy.log_reader import AccuracyLogReader, write_accuracy_log


def _image(seed: int, h: int = 4, w: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _read(path: Path, h: int = 4, w: int = 4, chunk_bytes: int = 1 << 20) -> tuple[list, AccuracyLogReader]:
    reader = AccuracyLogReader(path, h, w, chunk_bytes=chunk_bytes)
    return [(s.qsl_idx, s.image.copy()) for s in reader], reader


def _error(path: Path, h: int = 4, w: int = 4) -> str:
    with pytest.raises(AccuracyError) as info:
        _read(path, h, w)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_loadgen_log_is_read_as_json_would_read_it(tmp_path: Path) -> None:
    path = tmp_path / "mlperf_log_accuracy.json"
    images = {i: _image(i) for i in (3, 0, 2, 1)}
    write_accuracy_log(path, images.items())
    as_json = json.loads(path.read_text())  # the MLPerf scorer's way
    samples, reader = _read(path, chunk_bytes=7)  # a chunk much smaller than one entry
    assert [i for i, _ in samples] == [e["qsl_idx"] for e in as_json] == [3, 0, 2, 1]
    for (idx, img), entry in zip(samples, as_json, strict=True):
        assert np.array_equal(img, np.frombuffer(bytes.fromhex(entry["data"]), np.uint8).reshape(4, 4, 3))
        assert np.array_equal(img, images[idx])
    assert reader.stats.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (reader.stats.entries, reader.stats.unique, reader.stats.duplicates) == (4, 4, 0)


def test_duplicates_keep_the_first_entry_like_the_mlperf_scorer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log.json"
    first, other = _image(1), _image(99)
    write_accuracy_log(path, [(1, first), (0, _image(0)), (1, first), (1, other)])
    with caplog.at_level(logging.WARNING):
        samples, reader = _read(path)
    assert [i for i, _ in samples] == [1, 0]
    assert np.array_equal(samples[0][1], first)
    assert reader.stats.duplicates == 2 and reader.stats.differing_duplicates == [1]
    assert any("qsl_idx 1 appears again with different image bytes" in r.message for r in caplog.records)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), min_size=1, max_size=25), st.integers(1, 90))
def test_any_log_yields_each_first_entry_once_in_order(tmp_path_factory, entries, chunk_bytes: int) -> None:
    path = tmp_path_factory.mktemp("prop") / "log.json"
    write_accuracy_log(path, [(idx, _image(seed, 2, 2)) for idx, seed in entries])
    samples, reader = _read(path, 2, 2, chunk_bytes=chunk_bytes)
    expected: dict[int, int] = {}
    for idx, seed in entries:
        expected.setdefault(idx, seed)
    assert [i for i, _ in samples] == list(expected)
    for idx, img in samples:
        assert np.array_equal(img, _image(expected[idx], 2, 2))
    assert reader.stats.entries == len(entries) and reader.stats.unique == len(expected)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        ("[\n]\n", "has no entries"),
        ("{}", "is not a LoadGen accuracy log"),
    ],
)
def test_an_empty_or_foreign_log_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "log.json"
    path.write_text(content)
    assert message in _error(path)


def test_a_truncated_log_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    write_accuracy_log(path, [(i, _image(i)) for i in range(3)])
    whole = path.read_bytes()
    cut_in_entry = whole[: whole.index(b'"qsl_idx" : 2') + 30]
    cut_after_comma = whole[: whole.rindex(b",") + 1]
    for i, cut in enumerate((cut_in_entry, cut_after_comma, whole.rstrip().rstrip(b"]"))):
        broken = tmp_path / f"cut{i}.json"
        broken.write_bytes(cut)
        message = _error(broken)
        assert "is truncated" in message
    assert "entry 2 at byte" in _error(tmp_path / "cut0.json")


def test_a_wrong_image_shape_names_the_expected_and_the_found_size(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    write_accuracy_log(path, [(0, _image(0, 32, 32))])
    message = _error(path, 64, 64)
    assert "(qsl_idx 0) has 3072 bytes; expected 12288 = 64 x 64 x 3" in message
    assert "32 x 32 x 3 would fit" in message


@pytest.mark.parametrize(
    "entry, message",
    [
        ('{ "seq_id" : 0, "data" : "00" }', "no valid 'qsl_idx'"),
        ('{ "seq_id" : 0, "qsl_idx" : -1, "data" : "00" }', "no valid 'qsl_idx'"),
        ('{ "seq_id" : 0, "qsl_idx" : 0 }', "no 'data' hex string"),
        ('{ "seq_id" : 0, "qsl_idx" : 0, "data" : "ZZ" }', "'data' is not hex"),
        ("[1, 2]", "unexpected '['"),
    ],
)
def test_a_malformed_entry_is_a_clear_error(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "log.json"
    path.write_text(f"[\n{entry}\n]\n")
    assert message in _error(path, 1, 1)


def test_data_after_the_array_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    write_accuracy_log(path, [(0, _image(0))])
    path.write_text(path.read_text() + "[]")
    assert "data after the closing ']'" in _error(path)


def test_the_reader_never_holds_the_whole_log(tmp_path: Path) -> None:
    """A 12 MB log read with 64 KB chunks: Python's peak allocation stays near one entry, not the file."""
    path = tmp_path / "log.json"
    h = w = 64  # 12 KB of pixels, 24.6 KB of hex per entry
    write_accuracy_log(path, ((i, _image(i, h, w)) for i in range(500)))
    size = path.stat().st_size
    assert size > 12_000_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in AccuracyLogReader(path, h, w, chunk_bytes=64 << 10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 500
    assert peak < 1_000_000, f"peak {peak} bytes while reading a {size}-byte log"
