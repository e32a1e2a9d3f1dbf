"""`python -m tools.fid_stats IMAGE_DIR OUT.npz`: FID reference statistics from a folder of images.

For users' own prompt packs and datasets: the same network, preprocessing and statistics as the scorer
(pytorch-fid's FID InceptionV3, images as RGB uint8 -> [0, 1], 2048-d pool features, mean and `np.cov`),
written as pytorch-fid's `--save-stats` writes them (`np.savez_compressed`, keys `mu` and `sigma`), so
the file works as `accuracy.fid_stats` or with pytorch-fid itself. Images of different sizes are fine
(the network resizes to 299 x 299); a batch holds images of one size. Memory stays flat in the number
of images.

Exit codes: 0 written, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from accuracy.errors import AccuracyError

log = logging.getLogger("tools.fid_stats")

# pytorch-fid's IMAGE_EXTENSIONS
IMAGE_EXTENSIONS = {"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"}


def image_files(folder: Path) -> list[Path]:
    """The images directly in `folder`, sorted by name (as pytorch-fid lists them)."""
    if not folder.is_dir():
        raise AccuracyError(f"image folder {str(folder)!r} is not a directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)
    if len(files) < 2:
        raise AccuracyError(
            f"image folder {str(folder)!r} has {len(files)} images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
            "statistics need at least 2"
        )
    return files


def _batches(files: list[Path], batch_size: int) -> Iterator[np.ndarray]:
    """uint8 RGB batches; a batch is cut where the image size changes."""
    from PIL import Image

    batch: list[np.ndarray] = []
    for path in files:
        try:
            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise AccuracyError(f"image {str(path)!r} could not be read: {exc}") from exc
        if batch and (image.shape != batch[0].shape or len(batch) == batch_size):
            yield np.stack(batch)
            batch = []
        batch.append(image)
    if batch:
        yield np.stack(batch)


def folder_statistics(
    folder: Path,
    inception_weights: Path,
    batch_size: int = 8,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(mu, sigma, image count) of a folder's images under the FID Inception network."""
    from accuracy.fid import FeatureStats, InceptionFeatures, load_fid_inception

    files = image_files(folder)
    if not inception_weights.is_file():
        raise AccuracyError(
            f"Inception FID weights {str(inception_weights)!r} not found; fetch them with "
            "`python -m tools.fetch_assets --only inception`, or pass --inception-weights PATH (or standin)"
        )
    features = InceptionFeatures(load_fid_inception(inception_weights, device), device)
    stats = FeatureStats()
    for batch in _batches(files, batch_size):
        stats.update(features(batch))
        if progress is not None:
            progress(stats.count, len(files))
    return stats.mu, stats.sigma, stats.count


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.fid_stats",
        description="FID reference statistics (mu, sigma) of a folder of images, as pytorch-fid computes them.",
        epilog="example: python -m tools.fid_stats ~/data/my-pack-reference/ my-pack.npz\n"
        "then: python -m harness --mode accuracy --set accuracy.fid_stats=my-pack.npz ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", help="folder of images (png, jpg, ...; not searched recursively)")
    p.add_argument("out", help="the .npz to write (keys mu, sigma)")
    p.add_argument(
        "--inception-weights",
        metavar="PATH",
        help='pt_inception-2015-12-05-6726825d.pth (default: where tools.fetch_assets puts it), or "standin"',
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    return p


def _weights(value: str | None) -> Path:
    from accuracy.assets import ASSETS, default_asset_dir
    from accuracy.standins import STANDIN, ensure_standin_files
    from harness.run.manifest import cache_dir

    if value == STANDIN:
        return ensure_standin_files(cache_dir() / "accuracy-standins").inception_weights
    if value:
        return Path(value).expanduser()
    return default_asset_dir(cache_dir()) / ASSETS["inception"].filename


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out = Path(args.out).expanduser()
    try:
        if out.suffix != ".npz":
            raise AccuracyError(f"output {str(out)!r} must end in .npz")
        if out.exists() and not args.force:
            raise AccuracyError(f"output {str(out)!r} exists; pass --force to overwrite it")
        if args.batch_size < 1:
            raise AccuracyError(f"--batch-size must be at least 1, got {args.batch_size}")
        from accuracy.fid import save_stats
        from accuracy.scorer import check_device

        check_device(args.device)
        start = time.perf_counter()
        weights = _weights(args.inception_weights)
        mu, sigma, count = folder_statistics(Path(args.folder), weights, args.batch_size, args.device)
        save_stats(out, mu, sigma)
    except AccuracyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: statistics of {count} images ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
