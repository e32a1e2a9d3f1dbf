"""Score an accuracy log: stream it, CLIP-score and Inception-embed the images batch by batch, compute
the FID against reference statistics, judge the scores, and write accuracy.txt / accuracy.json.

Used by the harness after an accuracy run (harness/run/accuracy_step.py) and by `python -m accuracy`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from accuracy.assets import SCORER_ASSETS, fetch_command, file_sha256
from accuracy.clip_score import CLIP_MODEL, CLIP_PRETRAINED, LOADED_PRECISION, ClipScorer
from accuracy.errors import AccuracyError, MissingAssetError
from accuracy.fid import FID_METHODS, FeatureStats, InceptionFeatures, frechet_distance, load_fid_inception, load_stats
from accuracy.log_reader import AccuracyLogReader, LogStats
from accuracy.report import ACCURACY_JSON, ComplianceImages, write_reports
from accuracy.standins import STANDIN_NOTE
from accuracy.thresholds import CLIP_SCORE, FID_SCORE, Window, judge, relative_windows

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, "int | None"], None]
_WHAT = {"clip_weights": "CLIP weights", "inception_weights": "Inception FID weights", "fid_stats": "FID statistics"}


@dataclass(frozen=True)
class ScorerSpec:
    """Everything that decides the numbers, besides the images and captions."""

    height: int
    width: int
    clip_weights: Path
    inception_weights: Path
    fid_stats: Path
    standin: bool = False  # stand-in weights and statistics: the numbers are meaningless
    fid_method: str = "pytorch-fid"
    batch_size: int = 8
    device: str = "cpu"

    def check(self, flags: Mapping[str, str] | None = None) -> None:
        """Fail fast, before any image is generated: files present, settings valid, device there.

        `flags` names the command-line flag that sets each file (`python -m accuracy`'s own); without
        it a missing file names the harness's config key, accuracy.<key>."""
        for key in ("clip_weights", "inception_weights", "fid_stats"):
            path = Path(getattr(self, key))
            if not path.is_file():
                asset = SCORER_ASSETS[key]
                flag = (flags or {}).get(key)
                setting, how = (flag, f"pass {flag} PATH") if flag else (f"accuracy.{key}", f"set accuracy.{key}=PATH")
                raise MissingAssetError(
                    f"{_WHAT[key]} file {str(path)!r} not found ({setting}); fetch it with "
                    f"`{fetch_command(asset)}` or {how}"
                )
        if self.fid_method not in FID_METHODS:
            raise AccuracyError(
                f"accuracy.fid_method {self.fid_method!r} is not allowed; choose one of: {', '.join(FID_METHODS)}"
            )
        if self.batch_size < 1:
            raise AccuracyError(f"accuracy.batch_size must be at least 1, got {self.batch_size}")
        if self.height <= 0 or self.width <= 0:
            raise AccuracyError(f"image shape {self.height} x {self.width} must be positive")
        check_device(self.device)

    def identity(self, hash_cache: Path | None = None) -> dict[str, Any]:
        """What a reference run must share with this one for its scores to be comparable."""
        files = {
            key: {"path": str(getattr(self, key)), "sha256": file_sha256(getattr(self, key), hash_cache)}
            for key in ("clip_weights", "inception_weights", "fid_stats")
        }
        return {
            "clip_model": f"{CLIP_MODEL} ({CLIP_PRETRAINED} checkpoint, QuickGELU; {LOADED_PRECISION})",
            "inception_model": "pytorch-fid InceptionV3, FID weights, 2048-d pool features",
            **files,
            "fid_method": self.fid_method,
            "standin": self.standin,
            "image_shape": [self.height, self.width, 3],
            "batch_size": self.batch_size,
            "device": self.device,
        }


def check_device(device: str) -> None:
    """cpu, cuda or cuda:N, and the CUDA device must exist: no silent fallback to the CPU."""
    if device == "cpu":
        return
    head, _, index = device.partition(":")
    if head != "cuda" or (index and not index.isdigit()):
        raise AccuracyError(f"accuracy.device {device!r} is not allowed; use cpu, cuda or cuda:N")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(index or 0) >= count:
        raise AccuracyError(
            f"accuracy.device {device!r} is not available (torch sees {count} CUDA devices); "
            "use --set accuracy.device=cpu"
        )


@dataclass
class Scores:
    clip_score: float
    fid_score: float
    count: int
    log_path: Path
    log: LogStats
    seconds: dict[str, float] = field(default_factory=dict)
    compliance: dict[str, Any] | None = None
    # Per-image CLIP scores in qsl_idx order (8 bytes each), and their mean per prompt category
    # ({} when the categories are not known).
    qsl_indices: list[int] = field(default_factory=list)
    clip_scores: list[float] = field(default_factory=list)
    by_category: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the CLIP file held and what the loader rounded (clip_score.clip_weight_precision).
    clip_precision: dict[str, Any] = field(default_factory=dict)


def clip_by_category(
    qsl_indices: Sequence[int], clip_scores: Sequence[float], categories: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """{category: {"clip_score": mean, "count": n}}, categories in order of their first sample."""
    groups: dict[str, list[float]] = {}
    for idx, value in sorted(zip(qsl_indices, clip_scores, strict=True)):
        groups.setdefault(categories[idx], []).append(value)
    return {cat: {"clip_score": float(np.mean(values)), "count": len(values)} for cat, values in groups.items()}


def score_log(
    log_path: str | Path,
    captions: Sequence[str],
    spec: ScorerSpec,
    compliance: ComplianceImages | None = None,
    progress: ProgressFn | None = None,
    expected_count: int | None = None,
    categories: Sequence[str] | None = None,
) -> Scores:
    """CLIP score and FID of the unique samples in an accuracy log, in memory independent of its size
    (but for one float and one int per image). With `categories` (one per caption), also the mean CLIP
    score of each category."""
    spec.check()
    if categories is not None and len(categories) != len(captions):
        raise AccuracyError(f"{len(categories)} categories for {len(captions)} captions; give one per caption")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    # 1. Load the scorer: CLIP, the FID Inception and the reference statistics, all from local files.
    clip = ClipScorer.from_file(spec.clip_weights, spec.device)
    inception = InceptionFeatures(load_fid_inception(spec.inception_weights, spec.device), spec.device)
    mu_ref, sigma_ref = load_stats(spec.fid_stats)
    seconds["load"] = time.perf_counter() - start

    # 2. Stream the log: batches of unique samples -> per-image CLIP scores and Inception features.
    reader = AccuracyLogReader(log_path, spec.height, spec.width)
    clip_scores: list[float] = []  # 8 bytes per image, kept for the reference's np.mean
    qsl_indices: list[int] = []
    stats = FeatureStats()
    batch_idx: list[int] = []
    batch_img: list[np.ndarray] = []

    def flush() -> None:
        images = np.stack(batch_img)
        clip_scores.extend(clip.scores(images, [captions[i] for i in batch_idx]).tolist())
        qsl_indices.extend(batch_idx)
        stats.update(inception(images))
        batch_idx.clear()
        batch_img.clear()
        if progress is not None:
            progress(len(clip_scores), expected_count)

    stream_start = time.perf_counter()
    for sample in reader:
        if sample.qsl_idx >= len(captions):
            raise AccuracyError(
                f"accuracy log {str(log_path)!r}: qsl_idx {sample.qsl_idx} but there are only {len(captions)} "
                "captions; score the log with the prompts it was generated from"
            )
        if compliance is not None:
            compliance.offer(sample.qsl_idx, sample.image)
        batch_idx.append(sample.qsl_idx)
        batch_img.append(sample.image)
        if len(batch_idx) == spec.batch_size:
            flush()
    if batch_idx:
        flush()
    seconds["stream"] = time.perf_counter() - stream_start

    # 3. FID of the generated set against the reference statistics (reference first, as MLPerf).
    fid_start = time.perf_counter()
    fid = frechet_distance(mu_ref, sigma_ref, stats, spec.fid_method)
    seconds["fid"] = time.perf_counter() - fid_start
    seconds["total"] = time.perf_counter() - start
    clip_score = float(np.mean(clip_scores))
    order = np.argsort(qsl_indices, kind="stable")
    log.info(
        "accuracy: %d images, CLIP_SCORE %.6f, FID_SCORE %.6f (%.1f s, %.2f images/s streaming)",
        len(clip_scores),
        clip_score,
        fid,
        seconds["total"],
        len(clip_scores) / max(seconds["stream"], 1e-9),
    )
    return Scores(
        clip_score=clip_score,
        fid_score=fid,
        count=len(clip_scores),
        log_path=Path(log_path),
        log=reader.stats,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        compliance=compliance.finish() if compliance is not None else None,
        qsl_indices=[qsl_indices[i] for i in order],
        clip_scores=[clip_scores[i] for i in order],
        by_category=clip_by_category(qsl_indices, clip_scores, categories) if categories is not None else {},
        clip_precision=clip.precision,
    )


@dataclass(frozen=True)
class ReferenceRun:
    """The scores of an earlier run, from its accuracy.json."""

    run_dir: Path
    scores: dict[str, float]
    count: int
    scorer: dict[str, Any]

    @classmethod
    def load(cls, run_dir: str | Path) -> ReferenceRun:
        run_dir = Path(run_dir).expanduser()
        path = run_dir / ACCURACY_JSON
        if not path.is_file():
            what = "does not exist" if not run_dir.is_dir() else f"has no {ACCURACY_JSON}"
            raise AccuracyError(
                f"accuracy.reference {str(run_dir)!r} {what}; give the run directory of a scored accuracy run"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            scores = {CLIP_SCORE: float(data[CLIP_SCORE]), FID_SCORE: float(data[FID_SCORE])}
            return cls(run_dir, scores, int(data["count"]), dict(data["scorer"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise AccuracyError(f"reference {str(path)!r} is not a readable accuracy.json ({exc!r})") from exc

    def check_comparable(self, identity: dict[str, Any], expected_count: int | None) -> None:
        """Same scorer files, image shape and sample count, or the comparison means nothing."""
        where = f"accuracy.reference {str(self.run_dir)!r}"
        if expected_count is not None and self.count != expected_count:
            raise AccuracyError(
                f"{where} scored {self.count} samples, this run has {expected_count}; "
                "compare runs of the same prompts and dataset.count"
            )
        for key in ("clip_weights", "inception_weights", "fid_stats"):
            theirs = (self.scorer.get(key) or {}).get("sha256")
            ours = identity[key]["sha256"]
            if theirs != ours:
                raise AccuracyError(
                    f"{where} was scored with other {_WHAT[key]} (sha256 {str(theirs)[:12]}, this run "
                    f"{ours[:12]}); use the same accuracy.{key}"
                )
        for key in ("image_shape", "fid_method"):
            if self.scorer.get(key) != identity[key]:
                raise AccuracyError(f"{where} has {key} {self.scorer.get(key)}, this run {identity[key]}")


@dataclass(frozen=True)
class Thresholds:
    absolute: list[Window] = field(default_factory=list)
    reference: ReferenceRun | None = None
    clip_tolerance_pct: float = 1.0
    fid_tolerance_pct: float = 2.0

    def windows(self) -> list[Window]:
        windows = list(self.absolute)
        if self.reference is not None:
            source = f"reference run {self.reference.run_dir}"
            windows += relative_windows(self.reference.scores, self.clip_tolerance_pct, self.fid_tolerance_pct, source)
        return windows

    def describe(self) -> dict[str, Any]:
        ref = self.reference
        return {
            "absolute": [asdict(w) for w in self.absolute],
            "reference": None
            if ref is None
            else {
                "run_dir": str(ref.run_dir),
                CLIP_SCORE: ref.scores[CLIP_SCORE],
                FID_SCORE: ref.scores[FID_SCORE],
                "clip_tolerance_pct": self.clip_tolerance_pct,
                "fid_tolerance_pct": self.fid_tolerance_pct,
            },
        }


def evaluate(
    log_path: str | Path,
    captions: Sequence[str],
    spec: ScorerSpec,
    out_dir: str | Path,
    thresholds: Thresholds,
    expected_count: int | None = None,
    compliance_ids: Sequence[int] = (),
    hash_cache: Path | None = None,
    progress: ProgressFn | None = None,
    categories: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score the log, judge it, write accuracy.txt and accuracy.json into `out_dir`; return the report."""
    out_dir = Path(out_dir)
    spec.check()
    identity = spec.identity(hash_cache)
    if thresholds.reference is not None:
        thresholds.reference.check_comparable(identity, expected_count)
    compliance = ComplianceImages(out_dir / "images", compliance_ids, captions) if compliance_ids else None
    scores = score_log(log_path, captions, spec, compliance, progress, expected_count, categories)
    identity["clip_precision"] = scores.clip_precision  # known once the file is loaded
    return write_report(scores, identity, thresholds, out_dir, expected_count)


def write_report(
    scores: Scores,
    identity: dict[str, Any],
    thresholds: Thresholds,
    out_dir: str | Path,
    expected_count: int | None = None,
) -> dict[str, Any]:
    """Judge scores against the thresholds and write accuracy.txt / accuracy.json (no rescoring)."""
    problems = []
    if expected_count is not None and scores.count != expected_count:
        problems.append(f"scored {scores.count} unique samples, expected {expected_count}")
    values = {CLIP_SCORE: scores.clip_score, FID_SCORE: scores.fid_score}
    verdict = judge(values, thresholds.windows(), problems)
    standin = bool(identity.get("standin"))
    report: dict[str, Any] = {
        CLIP_SCORE: scores.clip_score,
        FID_SCORE: scores.fid_score,
        "count": scores.count,
        "expected_count": expected_count,
        "verdict": verdict.status,
        "checks": verdict.checks,
        "reasons": verdict.reasons,
        "thresholds": thresholds.describe(),
        "standin": standin,
        "note": STANDIN_NOTE if standin else "",
        "log": {
            "path": str(scores.log_path),
            "sha256": scores.log.sha256,
            "size_bytes": scores.log.size_bytes,
            "entries": scores.log.entries,
            "duplicates": scores.log.duplicates,
            "differing_duplicates": scores.log.differing_duplicates,
            "decoder": scores.log.decoder,  # native (harness_native._accuracy_log) or python
            "python_from_byte": scores.log.python_from_byte,
        },
        "scorer": identity,
        "compliance_images": scores.compliance,
        "seconds": scores.seconds,
        "by_category": scores.by_category,
        "qsl_indices": scores.qsl_indices,
        "clip_scores": scores.clip_scores,
    }
    write_reports(Path(out_dir), report, STANDIN_NOTE if standin else "")
    return report


def verdict_line(report: dict[str, Any]) -> str:
    """One line for the terminal: the verdict, both scores and their windows."""
    parts = [f"accuracy: {report['verdict']}"]
    checks = {c["metric"]: c for c in report.get("checks", [])}
    for metric in (CLIP_SCORE, FID_SCORE):
        text = f"{metric} {report[metric]:.6f}"
        if metric in checks:
            c = checks[metric]
            text += f" (window {c['low']:.6f}..{c['high']:.6f})"
        parts.append(text)
    parts.append(f"{report['count']} images")
    line = ", ".join(parts)
    if report["verdict"] == "UNCHECKED":
        line += "; no window configured: this run can be a reference (--set accuracy.reference=RUN_DIR)"
    for reason in report.get("reasons", []):
        line += f"\n  FAIL: {reason}"
    if report.get("standin"):
        line += f"\n  [{STANDIN_NOTE}]"
    return line


def resolve_scorer_files(values: dict[str, str], cache_dir: Path) -> tuple[dict[str, Path], bool]:
    """Config values of clip_weights / inception_weights / fid_stats -> paths, and whether any is a stand-in.

    "standin": the stand-in file, built under `cache_dir` on first use; "": where the fetch tool puts
    the real file (`<cache_dir>/assets/<name>`); anything else: a path.
    """
    from accuracy.assets import ASSETS, default_asset_dir
    from accuracy.standins import STANDIN, ensure_standin_files

    standin = any(values[key] == STANDIN for key in SCORER_ASSETS)
    built = ensure_standin_files(cache_dir / "accuracy-standins") if standin else None
    paths: dict[str, Path] = {}
    for key, asset in SCORER_ASSETS.items():
        value = values[key]
        if value == STANDIN:
            assert built is not None
            paths[key] = getattr(built, key)
        elif value == "":
            paths[key] = default_asset_dir(cache_dir) / ASSETS[asset].filename
        else:
            paths[key] = Path(value).expanduser()
    return paths, standin
