"""accuracy.txt, accuracy.json and the compliance images.

accuracy.txt follows what the MLPerf submission checker reads: a line
`Accuracy Results: {'FID_SCORE': '...', 'CLIP_SCORE': '...'}` (its patterns accept the quoted values)
and `hash=<SHA-256 of mlperf_log_accuracy.json>`. Scores are written with Python's shortest
round-trip repr, so the printed digits are the computed float's.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from accuracy.thresholds import CLIP_SCORE, FID_SCORE

log = logging.getLogger(__name__)

ACCURACY_TXT = "accuracy.txt"
ACCURACY_JSON = "accuracy.json"
# The ten images the v6.0 submission checker looks for in accuracy/images/ (with captions.txt).
V60_COMPLIANCE_IDS = (1311, 2476, 3644, 2188, 4114, 52, 388, 1195, 3427, 2289)


def format_score(value: float) -> str:
    """The float's shortest repr, in plain decimal (the checker's pattern reads digits and '.')."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = f"{value:.15f}"
    return text


def accuracy_txt(scores: dict[str, float], log_sha256: str, note: str = "") -> str:
    result = {FID_SCORE: format_score(scores[FID_SCORE]), CLIP_SCORE: format_score(scores[CLIP_SCORE])}
    lines = [f"Accuracy Results: {result}"]
    if note:
        lines.append(f"# {note}")
    lines.append(f"hash={log_sha256}")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_reports(out_dir: Path, report: dict[str, Any], note: str = "") -> None:
    """accuracy.txt (MLPerf format) and accuracy.json (everything) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = {CLIP_SCORE: report[CLIP_SCORE], FID_SCORE: report[FID_SCORE]}
    write_text_atomic(out_dir / ACCURACY_TXT, accuracy_txt(scores, report["log"]["sha256"], note))
    write_text_atomic(out_dir / ACCURACY_JSON, json.dumps(_jsonable(report), indent=2) + "\n")


class ComplianceImages:
    """Saves the images of chosen sample ids as `<id>.png` and writes `captions.txt` (`<id>  <caption>`)."""

    def __init__(self, folder: Path, ids: Iterable[int], captions: Sequence[str]) -> None:
        self.folder = folder
        self.ids = sorted(set(int(i) for i in ids))
        self.captions = captions
        self.saved: list[int] = []

    def offer(self, qsl_idx: int, image: np.ndarray) -> None:
        if qsl_idx not in self.ids or qsl_idx in self.saved:
            return
        from PIL import Image

        self.folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(self.folder / f"{qsl_idx}.png")
        self.saved.append(qsl_idx)

    def finish(self) -> dict[str, Any]:
        missing = [i for i in self.ids if i not in self.saved]
        if self.saved:
            lines = [f"{i}  {self.captions[i]}" for i in sorted(self.saved)]
            write_text_atomic(self.folder / "captions.txt", "\n".join(lines) + "\n")
        if missing and self.ids:
            log.warning(
                "compliance images: %d of %d ids are not in the log (%s)",
                len(missing),
                len(self.ids),
                ", ".join(map(str, missing[:10])),
            )
        return {"folder": str(self.folder), "ids": self.ids, "saved": sorted(self.saved), "missing": missing}
