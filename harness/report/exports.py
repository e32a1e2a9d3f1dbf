"""Every table of a report as tables/<name>.csv and tables/<name>.json, with the same column names.

CSV: a header row with the columns, then one line per row; a missing value is an empty field, a nested
value (list, dict) its JSON. JSON: {"table": name, "title": ..., "columns": [...], "rows": [{column: value}]}
with the values as they are (numbers, null, strings).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from harness.report.document import Table


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def write_table(table: Table, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / f"{table.name}.csv", folder / f"{table.name}.json"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(table.columns)
        writer.writerows([[_csv_value(v) for v in row] for row in table.cells()])
    doc = {
        "table": table.name,
        "title": table.title,
        "columns": list(table.columns),
        "rows": [{c: row.get(c) for c in table.columns} for row in table.rows],
    }
    json_path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    return csv_path, json_path


def write_tables(tables: list[Table], folder: Path) -> list[Path]:
    names = [t.name for t in tables]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"report tables must have unique names; repeated: {duplicates}")
    return [p for t in tables for p in write_table(t, folder)]
