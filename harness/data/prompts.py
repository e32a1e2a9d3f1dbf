"""Prompt sources for the QSL: TOML prompt packs and the MLPerf COCO captions TSV.

Both loaders return a `PromptSet` whose position ``i`` is QSL sample index ``i``. The set records
the file it came from and the SHA-256 of that file's bytes so that a run's manifest pins its prompts.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

logger = logging.getLogger(__name__)

DEFAULT_PROMPT_PACK = Path(__file__).resolve().parents[2] / "configs" / "prompts" / "default.toml"

PACK_KEYS = ("name", "negative_prompt", "prompts")
PROMPT_KEYS = ("text", "category", "negative_prompt")
# A pack entry without a `category` is grouped under this name in the reports.
UNCATEGORIZED = "uncategorized"

COCO_CATEGORY = "coco"
COCO_CAPTION_COLUMN = "caption"
PROMPT_EXTENSIONS = (".toml", ".tsv")


@dataclass(frozen=True)
class PromptSet:
    """Prompts in QSL sample order; ``texts[i]`` belongs to sample index ``i``."""

    name: str
    texts: tuple[str, ...]
    categories: tuple[str, ...]
    negative_prompts: tuple[str, ...]
    source: str
    sha256: str

    def __post_init__(self) -> None:
        lengths = {len(self.texts), len(self.categories), len(self.negative_prompts)}
        if len(lengths) != 1:
            raise ValueError(
                f"PromptSet {self.name!r}: texts, categories and negative_prompts differ in length "
                f"({len(self.texts)}, {len(self.categories)}, {len(self.negative_prompts)})"
            )

    def __len__(self) -> int:
        return len(self.texts)


def _read_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist or is not a file")
    return path.read_bytes()


def _string_field(value: Any, where: str, key: str, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key!r} must be a string, got {type(value).__name__} {value!r}")
    if not allow_empty and not value.strip():
        raise ConfigError(f"{where}: {key!r} must be a non-empty string")
    return value


def load_prompt_pack(path: str | Path, default_negative_prompt: str = "") -> PromptSet:
    """Load a TOML prompt pack (see ``configs/prompts/default.toml`` for the format).

    Negative prompt precedence: the entry's own ``negative_prompt``, then the pack's top-level
    ``negative_prompt``, then ``default_negative_prompt``.
    """
    path = Path(path)
    raw = _read_bytes(path, "prompt pack")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"prompt pack {str(path)!r} is not valid UTF-8 TOML: {exc}") from exc

    unknown = sorted(set(data) - set(PACK_KEYS))
    if unknown:
        raise ConfigError(f"prompt pack {str(path)!r}: unknown top-level key(s) {unknown}; allowed: {list(PACK_KEYS)}")
    where = f"prompt pack {str(path)!r}"
    name = _string_field(data.get("name", path.stem), where, "name", allow_empty=False)
    pack_negative = _string_field(
        data.get("negative_prompt", default_negative_prompt), where, "negative_prompt", allow_empty=True
    )

    entries = data.get("prompts", [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ConfigError(f"{where}: 'prompts' must be an array of tables ([[prompts]] with a 'text' key)")
    if not entries:
        raise ConfigError(f"{where} has no prompts; add at least one [[prompts]] table with a 'text' key")

    texts: list[str] = []
    categories: list[str] = []
    negatives: list[str] = []
    for index, entry in enumerate(entries):
        where_entry = f"{where}, prompts[{index}]"
        unknown = sorted(set(entry) - set(PROMPT_KEYS))
        if unknown:
            raise ConfigError(f"{where_entry}: unknown key(s) {unknown}; allowed: {list(PROMPT_KEYS)}")
        if "text" not in entry:
            raise ConfigError(f"{where_entry}: missing required key 'text'; allowed: {list(PROMPT_KEYS)}")
        texts.append(_string_field(entry["text"], where_entry, "text", allow_empty=False))
        categories.append(
            _string_field(entry.get("category", UNCATEGORIZED), where_entry, "category", allow_empty=False)
        )
        negatives.append(
            _string_field(entry.get("negative_prompt", pack_negative), where_entry, "negative_prompt", allow_empty=True)
        )

    prompts = PromptSet(
        name=name,
        texts=tuple(texts),
        categories=tuple(categories),
        negative_prompts=tuple(negatives),
        source=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
    )
    logger.info("loaded prompt pack %r: %d prompts from %s (sha256 %s)", name, len(prompts), path, prompts.sha256[:12])
    return prompts


def load_coco_captions(path: str | Path, default_negative_prompt: str = "") -> PromptSet:
    """Load the MLPerf captions TSV (``captions_source.tsv``); sample index = row index, header excluded.

    The reference reads this file with ``pandas.read_csv(sep="\\t")``: tab separated, fields that start
    with ``"`` are quoted and ``""`` inside them is one ``"``. The csv module's defaults with a tab
    delimiter parse the same way, so captions such as ``A sign that reads "car parking"`` come out as
    pandas gives them. Every row gets the category ``coco`` and ``default_negative_prompt``.
    """
    path = Path(path)
    raw = _read_bytes(path, "captions file")
    where = f"captions file {str(path)!r}"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not valid UTF-8: {exc}") from exc

    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar='"', doublequote=True, strict=True)
    captions: list[str] = []
    try:
        header = next(reader, None)
        if not header:
            raise ConfigError(f"{where} is empty; expected a header row with a {COCO_CAPTION_COLUMN!r} column")
        if COCO_CAPTION_COLUMN not in header:
            raise ConfigError(
                f"{where} has no {COCO_CAPTION_COLUMN!r} column; columns found: {header} "
                "(expected the MLPerf columns id, image_id, caption, height, width, file_name, coco_url, tab separated)"
            )
        column = header.index(COCO_CAPTION_COLUMN)
        for row in reader:
            if not row:  # pandas skips blank lines too
                continue
            if len(row) != len(header):
                raise ConfigError(
                    f"{where}, line {reader.line_num}: {len(row)} fields, the header has {len(header)} ({header})"
                )
            if not row[column].strip():
                raise ConfigError(f"{where}, line {reader.line_num}: empty {COCO_CAPTION_COLUMN!r}")
            captions.append(row[column])
    except csv.Error as exc:
        raise ConfigError(f"{where}, line {reader.line_num}: malformed TSV: {exc}") from exc

    if not captions:
        raise ConfigError(f"{where} has a header but no caption rows")

    prompts = PromptSet(
        name=path.stem,
        texts=tuple(captions),
        categories=(COCO_CATEGORY,) * len(captions),
        negative_prompts=(default_negative_prompt,) * len(captions),
        source=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
    )
    logger.info("loaded %d COCO captions from %s (sha256 %s)", len(prompts), path, prompts.sha256[:12])
    return prompts


def load_prompts(path: str, default_negative_prompt: str = "") -> PromptSet:
    """Load prompts by file extension: ``.toml`` a prompt pack, ``.tsv`` COCO captions; ``""`` the default pack."""
    if not path:
        return load_prompt_pack(DEFAULT_PROMPT_PACK, default_negative_prompt)
    suffix = Path(path).suffix.lower()
    if suffix == ".toml":
        return load_prompt_pack(path, default_negative_prompt)
    if suffix == ".tsv":
        return load_coco_captions(path, default_negative_prompt)
    raise ConfigError(
        f"prompts file {path!r} has extension {suffix or '(none)'!r}; allowed: {list(PROMPT_EXTENSIONS)} "
        "(a TOML prompt pack or the MLPerf captions TSV), or empty for the default pack"
    )
