"""Captions for rescoring a log outside the harness: the MLPerf captions TSV, a TOML prompt pack, or a
text file with one caption per line. Sample index = position, as in the harness's QSL.

Each caption's category, as harness/data/prompts.py gives it: a pack entry's `category` ("uncategorized"
without one), "coco" for every TSV row, "uncategorized" for a text file.

The TSV is read like the MLPerf scorer's `pandas.read_csv(sep="\\t")` (and harness/data/prompts.py): tab
separated, `"`-quoted fields with `""` for a quote inside.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from accuracy.errors import AccuracyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROMPT_PACK = PROJECT_ROOT / "configs" / "prompts" / "default.toml"
UNCATEGORIZED = "uncategorized"  # harness.data.prompts.UNCATEGORIZED (accuracy/ does not import harness)
COCO_CATEGORY = "coco"  # harness.data.prompts.COCO_CATEGORY


def read_captions(path: str | Path) -> list[str]:
    """Captions by file type: .tsv (column `caption`), .toml (`[[prompts]] text`), .txt (lines); "" = default pack."""
    return read_prompts(path)[0]


def read_prompts(path: str | Path) -> tuple[list[str], list[str]]:
    """(captions, categories), one category per caption; file types as `read_captions`."""
    path = Path(path) if str(path) else DEFAULT_PROMPT_PACK
    if not path.is_file():
        raise AccuracyError(f"captions file {str(path)!r} not found")
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        rows = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar='"', doublequote=True)
        header = next(rows, None) or []
        if "caption" not in header:
            raise AccuracyError(f"captions file {str(path)!r} has no 'caption' column (columns: {header})")
        col = header.index("caption")
        captions = [row[col] for row in rows if row]
        categories = [COCO_CATEGORY] * len(captions)
    elif suffix == ".toml":
        try:
            prompts = tomllib.loads(text).get("prompts", [])
            captions = [str(p["text"]) for p in prompts]
            categories = [str(p.get("category", UNCATEGORIZED)) for p in prompts]
        except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
            raise AccuracyError(f"prompt pack {str(path)!r} has no [[prompts]] with 'text': {exc}") from exc
    elif suffix == ".txt":
        captions = [line for line in text.splitlines() if line.strip()]
        categories = [UNCATEGORIZED] * len(captions)
    else:
        raise AccuracyError(f"captions file {str(path)!r}: extension {suffix!r} is not one of .tsv, .toml, .txt")
    if not captions:
        raise AccuracyError(f"captions file {str(path)!r} has no captions")
    return captions, categories
