"""What a report is made of, before it becomes Markdown or HTML: sections of alerts, notes, tables, figures.

Every table has a stable snake_case `name` (its export file is tables/<name>.csv and .json) and stable
snake_case column names; the values stay raw (numbers, None, strings) until a renderer formats them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Table:
    name: str  # snake_case, unique within a report: the export file name
    title: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    transpose: bool = False  # shown as one column per row (a long row of conditions reads better down the page)
    note: str = ""
    # Set by the report of one input: there `run` names the same input in every row and can go. A report of
    # several inputs keeps it even where one run has rows, so that every row (a failed one too) is traced.
    single_input: bool = False

    def cells(self) -> list[list[Any]]:
        return [[row.get(c) for c in self.columns] for row in self.rows]

    def shown_columns(self) -> tuple[str, ...]:
        """The columns a reader sees: `run` unless the report has one input and the rows one run name (the
        exports keep every column, so their shape does not depend on how many inputs there were)."""
        if self.single_input and "run" in self.columns and len({row.get("run") for row in self.rows}) <= 1:
            return tuple(c for c in self.columns if c != "run")
        return self.columns

    def shown_cells(self) -> list[list[Any]]:
        columns = self.shown_columns()
        return [[row.get(c) for c in columns] for row in self.rows]


@dataclass(frozen=True)
class Figure:
    name: str  # file name stem: figures/<name>.png next to report.md
    title: str
    png: bytes
    caption: str = ""


@dataclass
class Section:
    title: str
    alerts: list[str] = field(default_factory=list)  # shown prominently: failures, invalid results
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.alerts or self.notes or self.tables or self.figures)


@dataclass
class Document:
    title: str
    inputs: list[str]
    alerts: list[str] = field(default_factory=list)  # every problem of every input, at the top
    sections: list[Section] = field(default_factory=list)

    def tables(self) -> list[Table]:
        return [t for s in self.sections for t in s.tables]

    def figures(self) -> list[Figure]:
        return [f for s in self.sections for f in s.figures]


def fmt(value: Any) -> str:
    """A cell as text: '-' for missing, 4 significant digits for floats (one decimal from 10^4), yes/no."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1e4:
            return f"{value:.1f}"
        return f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)
