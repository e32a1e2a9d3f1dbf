"""The asset fetcher against a real HTTP server on 127.0.0.1 (http.server in a thread) serving fixtures."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from accuracy.assets import ASSETS, Asset
from tools.fetch_assets import FetchError, fetch_all, fetch_asset

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)  # a few chunks of the fetcher's 1 MiB reads


class _Server:
    """Serves `files` (name -> bytes) with HTTP Range support; records every request it answers."""

    def __init__(self, files: dict[str, bytes], honour_range: bool = True, cut_after: int = 0) -> None:
        self.files, self.honour_range, self.cut_after = files, honour_range, cut_after
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                rng = self.headers.get("Range")
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    data = data[start:]
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if server.cut_after:  # the connection drops part-way
                    self.wfile.write(data[: server.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[_Server]:
    with _Server({"payload.bin": PAYLOAD, "small.txt": b"hello\n"}) as s:
        yield s


def _asset(server: _Server, name: str = "payload.bin", **kw: object) -> Asset:
    data = server.files[name]
    fields = {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data), **kw}
    return Asset(name="fixture", filename=name, url=f"{server.url}/{name}", what="a test fixture", **fields)


def test_a_good_download_is_verified_and_renamed_into_place(server: _Server, tmp_path: Path) -> None:
    assert fetch_asset(_asset(server), tmp_path) == "downloaded"
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD
    assert not list(tmp_path.glob("*.part"))
    assert server.requests == [("payload.bin", None)]


def test_a_present_file_is_skipped_without_a_request(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "payload.bin").write_bytes(PAYLOAD)
    assert fetch_asset(_asset(server), tmp_path) == "present"
    assert server.requests == []


def test_a_present_file_that_does_not_verify_is_fetched_again(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "payload.bin").write_bytes(b"stale")
    assert fetch_asset(_asset(server), tmp_path) == "downloaded"
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD


def test_a_partial_download_resumes_with_a_range_request(server: _Server, tmp_path: Path) -> None:
    cut = 1_000_003
    (tmp_path / "payload.bin.part").write_bytes(PAYLOAD[:cut])
    assert fetch_asset(_asset(server), tmp_path) == "downloaded"
    assert server.requests == [("payload.bin", f"bytes={cut}-")]
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD
    assert not (tmp_path / "payload.bin.part").exists()


def test_a_server_without_range_support_starts_over(tmp_path: Path) -> None:
    with _Server({"payload.bin": PAYLOAD}, honour_range=False) as s:
        (tmp_path / "payload.bin.part").write_bytes(PAYLOAD[:5000])
        assert fetch_asset(_asset(s), tmp_path) == "downloaded"
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD


def test_a_dropped_connection_keeps_the_partial_file_for_the_next_run(tmp_path: Path) -> None:
    with _Server({"payload.bin": PAYLOAD}, cut_after=2_000_000) as s:
        with pytest.raises(FetchError, match="run again to resume"):
            fetch_asset(_asset(s), tmp_path)
    assert (tmp_path / "payload.bin.part").read_bytes() == PAYLOAD[:2_000_000]
    assert not (tmp_path / "payload.bin").exists()
    with _Server({"payload.bin": PAYLOAD}) as s:
        assert fetch_asset(_asset(s), tmp_path) == "downloaded"
        assert s.requests == [("payload.bin", "bytes=2000000-")]
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD


def test_a_checksum_mismatch_is_an_error_and_leaves_no_file(server: _Server, tmp_path: Path) -> None:
    wrong = replace(_asset(server), sha256="0" * 64)
    with pytest.raises(FetchError) as info:
        fetch_asset(wrong, tmp_path)
    message = str(info.value)
    assert "\n" not in message and "does not verify: sha256" in message and "expected 0000" in message
    assert "partial file was removed" in message
    assert list(tmp_path.iterdir()) == []


def test_prefix_and_git_blob_checks(server: _Server, tmp_path: Path) -> None:
    data = server.files["small.txt"]
    sha = hashlib.sha256(data).hexdigest()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert fetch_asset(_asset(server, "small.txt", sha256="", sha256_prefix=sha[:8]), tmp_path / "a") == "downloaded"
    assert fetch_asset(_asset(server, "small.txt", sha256="", git_blob_sha1=blob), tmp_path / "b") == "downloaded"
    bad_blob = _asset(server, "small.txt", sha256="", git_blob_sha1="f" * 40)
    with pytest.raises(FetchError, match="git blob id"):
        fetch_asset(bad_blob, tmp_path / "c")
    assert fetch_asset(bad_blob, tmp_path / "d", accept_unverified=True) == "unverified"
    assert (tmp_path / "d" / "small.txt").read_bytes() == data


def test_a_missing_file_fails_after_trying_the_others(server: _Server, tmp_path: Path) -> None:
    missing = Asset(name="gone", filename="gone.bin", url=f"{server.url}/gone.bin", what="x", sha256="0" * 64)
    with pytest.raises(FetchError, match="gone: .* answered HTTP 404"):
        fetch_all([missing, _asset(server)], tmp_path)
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD


def test_the_cli_fetches_the_real_captions_through_a_mirror(tmp_path: Path) -> None:
    """The registry's own SHA-256 against the shared copy of the MLPerf captions."""
    shared = ROOT.parent / "shared" / "data" / "mlperf-sdxl" / "captions_source.tsv"
    if not shared.is_file():
        pytest.skip(f"needs the shared MLPerf captions at {shared}")
    with _Server({"captions_source.tsv": shared.read_bytes()}) as s:
        cmd = [sys.executable, "-m", "tools.fetch_assets", "--only", "captions", "--no-progress"]
        cmd += ["--dest", str(tmp_path), "--mirror", s.url]
        first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
        again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "captions: downloaded" in first.stdout and "captions: present" in again.stdout
    assert (tmp_path / "captions_source.tsv").read_bytes() == shared.read_bytes()
    assert len(s.requests) == 1
    assert ASSETS["captions"].size_bytes == shared.stat().st_size


def test_the_cli_refuses_an_unknown_asset(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.fetch_assets", "--only", "weights", "--dest", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown asset 'weights'; choose from: captions")
