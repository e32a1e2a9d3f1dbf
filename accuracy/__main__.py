"""`python -m accuracy --log PATH`: score (or rescore) an accuracy log without running LoadGen.

Writes accuracy.txt and accuracy.json (and the compliance images) like the harness's accuracy mode.
When the log sits in a harness run directory, that run's config.toml supplies the image shape, the
captions, the sample count and the [accuracy] settings; flags override them. accuracy.json carries the
per-image CLIP scores and their mean per prompt category (`by_category`): the categories come from the
captions file (a prompt pack's `category`; "coco" for every row of the MLPerf TSV).

Exit codes: 0 PASS or UNCHECKED, 3 FAIL, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from accuracy.assets import default_cache_dir
from accuracy.captions import read_prompts
from accuracy.errors import AccuracyError
from accuracy.report import V60_COMPLIANCE_IDS
from accuracy.scorer import ReferenceRun, ScorerSpec, Thresholds, evaluate, resolve_scorer_files, verdict_line
from accuracy.thresholds import FAIL, absolute_windows

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

EPILOG = """\
examples:
  python -m accuracy --log runs/RUN/mlperf_log_accuracy.json          settings from runs/RUN/config.toml
  python -m accuracy --log runs/B/mlperf_log_accuracy.json --reference runs/A
  python -m accuracy --log LOG --height 1024 --width 1024 --captions captions_source.tsv \\
      --clip-window 31.68631873 31.81331801 --fid-window 23.01085758 23.95007626

scorer files: --clip-weights/--inception-weights/--fid-stats PATH, "standin" for seeded stand-ins,
default: where `python -m tools.fetch_assets` puts them ($HARNESS_CACHE_DIR/assets)
exit codes: 0 PASS or UNCHECKED, 3 FAIL, 2 bad input
"""


# The flags that set the scorer files (the harness's config keys are accuracy.<key>).
SCORER_FLAGS = {key: "--" + key.replace("_", "-") for key in ("clip_weights", "inception_weights", "fid_stats")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m accuracy",
        description="Score an MLPerf accuracy log (CLIP score and FID, as the MLPerf SDXL scorer).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--log", required=True, metavar="PATH", help="mlperf_log_accuracy.json")
    p.add_argument("--out", metavar="DIR", help="where accuracy.txt/.json go (default: the log's folder)")
    p.add_argument(
        "--captions",
        metavar="FILE",
        help="captions: .tsv (MLPerf), .toml prompt pack (its categories give by_category) or .txt",
    )
    p.add_argument("--height", type=int, help="image height in pixels")
    p.add_argument("--width", type=int, help="image width in pixels")
    p.add_argument("--expected-count", type=int, help="samples the log must hold (default: the run's count)")
    p.add_argument("--clip-weights", metavar="PATH", help='OpenAI ViT-B-32.pt, or "standin"')
    p.add_argument("--inception-weights", metavar="PATH", help='pt_inception-2015-12-05-6726825d.pth, or "standin"')
    p.add_argument("--fid-stats", metavar="PATH", help='reference statistics .npz (mu, sigma), or "standin"')
    p.add_argument("--fid-method", choices=("pytorch-fid", "eigen"), help="matrix square root route")
    p.add_argument("--batch-size", type=int, help="images per forward pass")
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    p.add_argument("--clip-window", nargs=2, type=float, metavar=("MIN", "MAX"))
    p.add_argument("--fid-window", nargs=2, type=float, metavar=("MIN", "MAX"))
    p.add_argument("--reference", metavar="RUN_DIR", help="judge against this run's accuracy.json")
    p.add_argument("--clip-tolerance-pct", type=float)
    p.add_argument("--fid-tolerance-pct", type=float)
    p.add_argument("--compliance-ids", metavar="I,J,...", help='sample ids saved as PNG ("" for none)')
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _run_config(log_path: Path) -> dict[str, Any]:
    config = log_path.parent / "config.toml"
    if not config.is_file():
        return {}
    return tomllib.loads(config.read_text(encoding="utf-8"))


def _pick(flag: Any, section: dict[str, Any], key: str, default: Any) -> Any:
    return flag if flag is not None else section.get(key, default)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    bar = _ProgressBar() if sys.stderr.isatty() else None
    try:
        report = _score(args, bar.update if bar else None)
    except AccuracyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.stop()
    print(verdict_line(report))
    return 3 if report["verdict"] == FAIL else 0


def _score(args: argparse.Namespace, progress: Any = None) -> dict[str, Any]:
    log_path = Path(args.log).expanduser()
    if not log_path.is_file():
        raise AccuracyError(f"accuracy log {str(log_path)!r} not found")
    run = _run_config(log_path)
    model, dataset, acc = run.get("model", {}), run.get("dataset", {}), run.get("accuracy", {})
    height, width = _pick(args.height, model, "height", None), _pick(args.width, model, "width", None)
    if height is None or width is None:
        raise AccuracyError("the image shape is unknown: pass --height and --width (no config.toml beside the log)")
    captions_path = args.captions if args.captions is not None else dataset.get("path", None)
    if captions_path is None:
        raise AccuracyError("the captions are unknown: pass --captions FILE (no config.toml beside the log)")
    captions, categories = read_prompts(captions_path)  # categories: accuracy.json's by_category
    expected = args.expected_count
    if expected is None and run:
        expected = int(dataset.get("count", 0)) or len(captions)

    cache_dir = default_cache_dir()
    values = {
        "clip_weights": _pick(args.clip_weights, acc, "clip_weights", ""),
        "inception_weights": _pick(args.inception_weights, acc, "inception_weights", ""),
        "fid_stats": _pick(args.fid_stats, acc, "fid_stats", ""),
    }
    paths, standin = resolve_scorer_files(values, cache_dir)
    spec = ScorerSpec(
        height=int(height),
        width=int(width),
        standin=standin,
        fid_method=_pick(args.fid_method, acc, "fid_method", "pytorch-fid"),
        batch_size=int(_pick(args.batch_size, acc, "batch_size", 8)),
        device=_pick(args.device, acc, "device", "cpu"),
        **paths,
    )
    spec.check(SCORER_FLAGS)  # a missing file names this command's flag, not the harness's config key
    clip_w = args.clip_window or (model.get("clip_score_min", 0.0), model.get("clip_score_max", 0.0))
    fid_w = args.fid_window or (model.get("fid_min", 0.0), model.get("fid_max", 0.0))
    reference = _pick(args.reference, acc, "reference", "")
    thresholds = Thresholds(
        absolute=absolute_windows(clip_w[0], clip_w[1], fid_w[0], fid_w[1]),
        reference=ReferenceRun.load(reference) if reference else None,
        clip_tolerance_pct=float(_pick(args.clip_tolerance_pct, acc, "clip_tolerance_pct", 1.0)),
        fid_tolerance_pct=float(_pick(args.fid_tolerance_pct, acc, "fid_tolerance_pct", 2.0)),
    )
    if args.compliance_ids is not None:
        try:
            ids = [int(x) for x in args.compliance_ids.split(",") if x.strip()]
        except ValueError:
            raise AccuracyError(f"--compliance-ids {args.compliance_ids!r}: expected integers like 1311,2476") from None
    else:
        ids = list(acc.get("compliance_ids", V60_COMPLIANCE_IDS))
    return evaluate(
        log_path,
        captions,
        spec,
        Path(args.out) if args.out else log_path.parent,
        thresholds,
        expected_count=expected,
        compliance_ids=ids,
        hash_cache=cache_dir / "accuracy" / "sha256-cache.json",
        progress=progress,
        categories=categories,
    )


class _ProgressBar:
    """A rich bar on stderr: images scored of the expected count."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress(
            "scoring", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True)
        )
        self._task = self._bar.add_task("scoring", total=None)
        self._bar.start()

    def update(self, done: int, expected: int | None) -> None:
        self._bar.update(self._task, completed=done, total=expected)

    def stop(self) -> None:
        self._bar.stop()


if __name__ == "__main__":
    sys.exit(main())
