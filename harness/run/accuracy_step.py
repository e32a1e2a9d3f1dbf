"""Accuracy mode's scoring step: the glue between the run's configuration and `accuracy/`.

`prepare` runs before the model loads, so a missing weights file or a bad reference run stops the
run at once (one line, exit code 2) rather than after an hour of generation. `score` runs after
LoadGen has written mlperf_log_accuracy.json: it streams the log through the CLIP / FID scorer, writes
accuracy.txt and accuracy.json into the run directory and returns what goes into summary.json.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import RunConfig
from harness.errors import ConfigError
from harness.run.manifest import cache_dir

log = logging.getLogger(__name__)

VERDICT_EXIT_CODES = {"FAIL": 3, "ERROR": 2}
NOT_SCORED = "NOT_SCORED"


@dataclass(frozen=True)
class AccuracyPlan:
    spec: Any = None  # accuracy.scorer.ScorerSpec
    thresholds: Any = None  # accuracy.scorer.Thresholds
    compliance_ids: tuple[int, ...] = ()
    expected_count: int = 0
    not_scored: str = ""  # why the run is not scored (no scorer files and nothing to judge)


def _import_scorer() -> Any:
    try:
        import open_clip  # noqa: F401  the `accuracy` extra; accuracy/ imports these lazily
        import pytorch_fid  # noqa: F401
        import scipy  # noqa: F401

        from accuracy import scorer
    except ImportError as exc:  # the optional dependencies of the `accuracy` extra
        raise ConfigError(
            f"accuracy mode scores with CLIP and FID and needs the accuracy extra ({exc.name or exc} is missing): "
            "pip install -e '.[accuracy]', or --set accuracy.score=false to only log the images"
        ) from exc
    return scorer


def _needs_verdict(cfg: RunConfig) -> bool:
    m = cfg.model
    return bool(cfg.accuracy.reference) or m.clip_score_max > 0 or m.fid_max > 0


def prepare(cfg: RunConfig, expected_count: int) -> AccuracyPlan | None:
    """Check everything scoring will need; None when `accuracy.score` is false.

    A missing scorer (files or the `accuracy` extra) stops the run with one line when there is a
    verdict to give (the model has an accuracy window, or accuracy.reference is set); otherwise the run
    goes on, says why it is not scored, and logs its images for a later `python -m accuracy`.
    """
    acc, m = cfg.accuracy, cfg.model
    if not acc.score:
        return None
    ids = acc.compliance_ids
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ConfigError(f"accuracy.compliance_ids must be a list of sample indices (integers >= 0), got {ids!r}")
    try:
        scorer = _import_scorer()
    except ConfigError as exc:
        if _needs_verdict(cfg):
            raise
        return _not_scored(str(exc))
    from accuracy.errors import AccuracyError, MissingAssetError
    from accuracy.thresholds import absolute_windows

    try:
        values = {key: getattr(acc, key) for key in ("clip_weights", "inception_weights", "fid_stats")}
        paths, standin = scorer.resolve_scorer_files(values, cache_dir())
        spec = scorer.ScorerSpec(
            height=m.height,
            width=m.width,
            standin=standin,
            fid_method=acc.fid_method,
            batch_size=acc.batch_size,
            device=acc.device,
            **paths,
        )
        try:
            spec.check()
        except MissingAssetError as exc:
            if _needs_verdict(cfg):
                raise
            return _not_scored(f"{exc} (model {m.name!r} has no accuracy window and no accuracy.reference is set)")
        thresholds = scorer.Thresholds(
            absolute=absolute_windows(m.clip_score_min, m.clip_score_max, m.fid_min, m.fid_max),
            reference=scorer.ReferenceRun.load(acc.reference) if acc.reference else None,
            clip_tolerance_pct=acc.clip_tolerance_pct,
            fid_tolerance_pct=acc.fid_tolerance_pct,
        )
        thresholds.windows()  # a bad tolerance fails here
        if thresholds.reference is not None:
            thresholds.reference.check_comparable(spec.identity(_hash_cache()), expected_count)
    except AccuracyError as exc:
        raise ConfigError(str(exc)) from exc
    if standin:
        log.warning("accuracy: scoring with stand-in weights (seeded random): the scores are meaningless")
    return AccuracyPlan(spec, thresholds, tuple(ids), expected_count)


def _not_scored(reason: str) -> AccuracyPlan:
    log.warning("accuracy: this run will not be scored: %s", reason)
    return AccuracyPlan(not_scored=reason)


def _hash_cache() -> Path:
    return cache_dir() / "accuracy" / "sha256-cache.json"


def score(
    plan: AccuracyPlan, run_dir: Path, captions: Sequence[str], categories: Sequence[str] | None = None
) -> dict[str, Any]:
    """Score the run's accuracy log; the report for summary.json (verdict ERROR when it cannot be scored).

    With `categories` (one per caption), accuracy.json also gets the mean CLIP score per category
    (`by_category`); the per-image scores stay in accuracy.json only."""
    if plan.not_scored:
        return {"verdict": NOT_SCORED, "reason": plan.not_scored}
    import torch

    from accuracy import scorer
    from accuracy.errors import AccuracyError

    log_path = run_dir / "mlperf_log_accuracy.json"
    # LoadGen has finished and the workers are closed: the scorer may use every core (the SUT gave
    # the backend one fewer); put the setting back afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(os.cpu_count() or 1, 1))
    try:
        report = scorer.evaluate(
            log_path,
            captions,
            plan.spec,
            run_dir,
            plan.thresholds,
            expected_count=plan.expected_count,
            compliance_ids=plan.compliance_ids,
            hash_cache=_hash_cache(),
            progress=_log_progress(plan.expected_count),
            categories=categories,
        )
    except AccuracyError as exc:
        log.error("accuracy: %s", exc)
        return {"verdict": "ERROR", "error": str(exc)}
    finally:
        torch.set_num_threads(threads)
    per_image = ("qsl_indices", "clip_scores")  # one number per sample: accuracy.json only
    summary = {k: v for k, v in report.items() if k not in ("checks", "scorer", "log", "compliance_images", *per_image)}
    summary["files"] = ["accuracy.txt", "accuracy.json"]
    summary["line"] = scorer.verdict_line(report)
    return summary


def _log_progress(total: int) -> Any:
    step = max(total // 10, 1)
    next_at = [step]

    def progress(done: int, expected: int | None) -> None:
        if done >= next_at[0]:
            log.info("accuracy: scored %d/%d images", done, total)
            next_at[0] = done + step

    return progress


def verdict_line(accuracy: dict[str, Any]) -> str:
    """The terminal line for summary["accuracy"]."""
    if accuracy.get("verdict") == "ERROR":
        return f"accuracy: ERROR: {accuracy.get('error')}"
    if accuracy.get("verdict") == NOT_SCORED:
        return f"accuracy: NOT SCORED: {accuracy.get('reason')}"
    return str(accuracy.get("line", f"accuracy: {accuracy.get('verdict')}"))
