"""`python -m tools.fetch_assets`: download the MLPerf SDXL accuracy assets from their public origins.

The captions TSV, the fixed latents, the FID reference statistics (val2014.npz), the Inception FID
weights, the open_clip ViT-B-32 `openai` weights and torchvision's AlexNet (the LPIPS diversity
backbone, `--only alexnet`; see accuracy/assets.py for the URLs and what each is checked against).
Into `--dest` (default `$HARNESS_CACHE_DIR/assets`, where the sdxl config's empty `accuracy.*` and
`quality.lpips_weights` paths look). Each file is:
- skipped when already present and it verifies;
- downloaded to `<name>.part`, resumed from there (HTTP Range) when a previous try was cut off;
- verified (SHA-256, or what is published, see accuracy/assets.py) before it is renamed into place;
  on a mismatch the partial file is deleted and the tool exits 1.

Exit codes: 0 all present, 1 a download or check failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from accuracy.assets import ASSETS, Asset, default_asset_dir, digests

log = logging.getLogger("tools.fetch_assets")

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60
ProgressFn = Callable[[str, int, "int | None"], None]  # (name, bytes so far, total or None)


class FetchError(Exception):
    """A download or a check failed; the message is one line."""


def check_file(asset: Asset, path: Path) -> str:
    """'' when `path` is the asset, else why not (one line)."""
    sha, blob = digests(path)
    if asset.sha256 and sha != asset.sha256:
        return f"sha256 {sha}, expected {asset.sha256}"
    if asset.git_blob_sha1 and blob != asset.git_blob_sha1:
        return f"git blob id {blob}, expected {asset.git_blob_sha1}"
    if asset.sha256_prefix and not sha.startswith(asset.sha256_prefix):
        return f"sha256 {sha} does not start with {asset.sha256_prefix}"
    if asset.size_bytes and path.stat().st_size != asset.size_bytes:
        return f"{path.stat().st_size} bytes, expected {asset.size_bytes}"
    return ""


def _download(asset: Asset, url: str, part: Path, progress: ProgressFn | None) -> None:
    """Fetch `url` into `part`, continuing a partial file with a Range request when the server allows."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "t2i-harness-fetch-assets"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the partial file may be whole
            return
        raise FetchError(f"{asset.name}: {url} answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{asset.name}: cannot reach {url}: {getattr(exc, 'reason', exc)}") from exc
    with response:
        resumed = have and response.status == 206
        if have and not resumed:
            log.info("%s: the server does not resume; starting over", asset.name)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else (asset.size_bytes or None)
        done = have
        with part.open("ab" if resumed else "wb") as f:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:  # dropped: keep what arrived, resume later
                    raise FetchError(
                        f"{asset.name}: download interrupted after {done} bytes ({exc}); run again to resume"
                    ) from exc
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(asset.name, done, total)
    if total is not None and done < total:
        raise FetchError(f"{asset.name}: got {done} of {total} bytes; run again to resume")


def fetch_asset(
    asset: Asset, dest: Path, mirror: str = "", accept_unverified: bool = False, progress: ProgressFn | None = None
) -> str:
    """Make `dest/asset.filename` present and verified; returns 'present', 'downloaded' or 'unverified'."""
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / asset.filename
    if final.is_file():
        problem = check_file(asset, final)
        if not problem:
            log.info("%s: %s already present and verified", asset.name, final)
            return "present"
        log.warning("%s: %s is there but does not verify (%s); downloading again", asset.name, final, problem)
    part = final.with_name(final.name + ".part")
    url = mirror.rstrip("/") + "/" + asset.filename if mirror else asset.url
    _download(asset, url, part, progress)
    problem = check_file(asset, part)
    if problem:
        if accept_unverified and not asset.sha256:
            log.warning("%s: kept although it does not verify (%s): --accept-unverified", asset.name, problem)
            part.replace(final)
            return "unverified"
        part.unlink()
        raise FetchError(f"{asset.name}: {url} does not verify: {problem}; the partial file was removed")
    part.replace(final)
    log.info("%s: %s (%s verified)", asset.name, final, asset.verification)
    return "downloaded"


def fetch_all(
    assets: Sequence[Asset],
    dest: Path,
    mirror: str = "",
    accept_unverified: Sequence[str] = (),
    progress: ProgressFn | None = None,
) -> dict[str, str]:
    """Fetch each asset; raises FetchError after trying them all if any failed."""
    results, failures = {}, []
    for asset in assets:
        try:
            results[asset.name] = fetch_asset(asset, dest, mirror, asset.name in accept_unverified, progress)
        except FetchError as exc:
            failures.append(str(exc))
            results[asset.name] = "failed"
    if failures:
        raise FetchError("; ".join(failures))
    return results


def build_parser() -> argparse.ArgumentParser:
    names = ", ".join(ASSETS)
    p = argparse.ArgumentParser(
        prog="python -m tools.fetch_assets",
        description="Download and verify the MLPerf SDXL accuracy assets (captions, latents, FID statistics, "
        "Inception FID weights, CLIP ViT-B-32 weights, the LPIPS AlexNet) from their public origins.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="assets:\n"
        + "\n".join(f"  {a.name:10} {a.filename:38} {a.what}; checked by {a.verification}" for a in ASSETS.values())
        + "\n\nexit codes: 0 all present, 1 a download or check failed, 2 bad input",
    )
    p.add_argument("--dest", metavar="DIR", help="where the files go (default: $HARNESS_CACHE_DIR/assets)")
    p.add_argument("--only", action="append", default=[], metavar="NAME", help=f"fetch only these ({names})")
    p.add_argument("--mirror", metavar="URL", help="fetch every file as URL/<filename> instead of its origin")
    p.add_argument(
        "--accept-unverified",
        action="append",
        default=[],
        metavar="NAME",
        help="keep this asset even when it does not match its recorded digest (only assets without a "
        "published SHA-256: fid-stats, inception, alexnet)",
    )
    p.add_argument("--list", action="store_true", help="list the assets and where they come from")
    p.add_argument("--no-progress", action="store_true")
    return p


def _cache_dir() -> Path:
    from harness.run.manifest import cache_dir

    return cache_dir()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    unknown = [n for n in args.only + args.accept_unverified if n not in ASSETS]
    if unknown:
        print(f"error: unknown asset {unknown[0]!r}; choose from: {', '.join(ASSETS)}", file=sys.stderr)
        return 2
    if args.list:
        for a in ASSETS.values():
            print(f"{a.name}\t{a.filename}\t{a.url}\t{a.verification}")
        return 0
    dest = Path(args.dest).expanduser() if args.dest else default_asset_dir(_cache_dir())
    chosen = [ASSETS[n] for n in args.only] if args.only else list(ASSETS.values())
    bar = None if args.no_progress else _RichBar()
    try:
        with bar or _NoBar():
            results = fetch_all(chosen, dest, args.mirror or "", args.accept_unverified, bar.update if bar else None)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; partial downloads (*.part) are kept and resume on the next run", file=sys.stderr)
        return 130
    for name, state in results.items():
        print(f"{name}: {state} ({dest / ASSETS[name].filename})")
    return 0


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _RichBar:
    """One rich progress bar per file, on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
        )
        self._tasks: dict[str, Any] = {}  # name -> rich TaskID (rich is imported lazily)

    def __enter__(self) -> _RichBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, name: str, done: int, total: int | None) -> None:
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=total)
        self._progress.update(self._tasks[name], completed=done, total=total)


if __name__ == "__main__":
    sys.exit(main())
