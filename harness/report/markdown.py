"""Document -> report.md. Figures are linked as figures/<name>.png, written next to it by write_report."""

from __future__ import annotations

from harness.report.document import Document, Table, fmt


def _cell(value: object) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table, heading: bool = True) -> list[str]:
    if table.transpose:
        header = ["field", *[_cell(row.get(table.columns[0])) for row in table.rows]]
        body = [[c, *[_cell(row.get(c)) for row in table.rows]] for c in table.columns[1:]]
    else:
        header = list(table.shown_columns())
        body = [[_cell(v) for v in row] for row in table.shown_cells()]
    lines = [f"### {table.title}", ""] if heading else []
    lines += [f"Exported as `tables/{table.name}.csv` and `tables/{table.name}.json`.", ""]
    if table.note:
        lines += [table.note, ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return [*lines, ""]


def render_markdown(doc: Document) -> str:
    lines = [f"# {doc.title}", "", "Inputs:", ""]
    lines += [f"- {i}" for i in doc.inputs]
    lines.append("")
    if doc.alerts:
        lines += [f"> **{len(doc.alerts)} PROBLEM(S): read these before the figures**", ">"]
        lines += [f"> - **{a}**" for a in doc.alerts]
        lines.append("")
    for section in doc.sections:
        lines += [f"## {section.title}", ""]
        for alert in section.alerts:
            lines += [f"> **{alert}**", ""]
        for note in section.notes:
            lines += [note, ""]
        for table in section.tables:
            lines += table_markdown(table, heading=table.title != section.title)
        for fig in section.figures:
            lines += [f"### {fig.title}", "", f"![{fig.title}](figures/{fig.name}.png)", ""]
            if fig.caption:
                lines += [fig.caption, ""]
    return "\n".join(lines).rstrip() + "\n"
