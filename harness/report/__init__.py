"""Benchmark reports: report.md and a self-contained report.html, with every table also as CSV and JSON.

    from harness.report import write_report
    md, html = write_report([Path("runs/A"), Path("runs/B")], Path("reports/ab"))

Inputs are run directories (summary.json) and sweep, scale and compare directories (sweep.json, scale.json,
compare.json). The output folder gets report.md, report.html, figures/<name>.png (the figures report.md
links; report.html embeds them) and tables/<name>.csv + .json. Bad input raises HarnessError before
anything is written. `python -m harness report` (harness/commands/report.py) is the command line.
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.report.assemble import build_document
from harness.report.collect import collect
from harness.report.document import Document
from harness.report.exports import write_tables
from harness.report.html import render_html
from harness.report.markdown import render_markdown

__all__ = ["build_document", "collect", "write_report"]

log = logging.getLogger(__name__)


def _remove_stale(out_dir: Path, doc: Document) -> None:
    """A report written again into the same folder replaces the last one: exports and figures it no
    longer has would otherwise look current. Only where a report was written before (report.md)."""
    if not (out_dir / "report.md").is_file():
        return
    keep_tables = {t.name for t in doc.tables()}
    keep_figures = {f.name for f in doc.figures()}
    for pattern, keep in (
        ("tables/*.csv", keep_tables),
        ("tables/*.json", keep_tables),
        ("figures/*.png", keep_figures),
    ):
        for path in out_dir.glob(pattern):
            if path.stem not in keep:
                path.unlink()


def write_document(doc: Document, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(out_dir, doc)
    write_tables(doc.tables(), out_dir / "tables")
    figures = out_dir / "figures"
    if doc.figures():
        figures.mkdir(exist_ok=True)
    for fig in doc.figures():
        (figures / f"{fig.name}.png").write_bytes(fig.png)
    md, html = out_dir / "report.md", out_dir / "report.html"
    md.write_text(render_markdown(doc), encoding="utf-8")
    html.write_text(render_html(doc), encoding="utf-8")
    return md, html


def write_report(inputs: list[Path], out_dir: Path) -> tuple[Path, Path]:
    """Read the inputs, write the report into out_dir; (report.md, report.html)."""
    doc = build_document(collect(list(inputs)))
    md, html = write_document(doc, Path(out_dir))
    log.info("report: %d table(s), %d figure(s) -> %s", len(doc.tables()), len(doc.figures()), out_dir)
    return md, html
