"""Document -> report.html: one self-contained file (inline CSS, images as data: URIs, no scripts), so it
opens anywhere without a network and can be mailed or attached as it is."""

from __future__ import annotations

import base64
from html import escape

from harness.report.document import Document, Figure, Table, fmt

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d1d1f; background: #fff; }
h1 { border-bottom: 2px solid #4c72b0; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef2f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
.alert { background: #fdecea; border: 2px solid #c0392b; color: #7b1e12; padding: .6em 1em; margin: 1em 0;
         border-radius: 4px; }
.alert strong { color: #c0392b; }
.ok { background: #eaf7ee; border: 1px solid #3c8d50; padding: .4em 1em; border-radius: 4px; }
.note, .export { color: #555; font-size: 13px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 13px; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def _td(value: object, header: bool = False, align: bool = True) -> str:
    tag = "th" if header else "td"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    cls = ' class="num"' if align and numeric else ""
    return f"<{tag}{cls}>{escape(fmt(value))}</{tag}>"


def table_html(table: Table, heading: bool = True) -> str:
    parts = [f'<h3 id="{escape(table.name)}">{escape(table.title)}</h3>'] if heading else []
    if table.note:
        parts.append(f'<p class="note">{escape(table.note)}</p>')
    parts.append("<table>")
    if table.transpose:
        first = table.columns[0]
        parts.append("<tr><th>field</th>" + "".join(_td(r.get(first), True) for r in table.rows) + "</tr>")
        for c in table.columns[1:]:
            parts.append(
                f"<tr><th>{escape(c)}</th>" + "".join(_td(r.get(c), align=False) for r in table.rows) + "</tr>"
            )
    else:
        parts.append("<tr>" + "".join(f"<th>{escape(c)}</th>" for c in table.shown_columns()) + "</tr>")
        for row in table.shown_cells():
            parts.append("<tr>" + "".join(_td(v) for v in row) + "</tr>")
    parts.append("</table>")
    parts.append(
        f'<p class="export">exported as <code>tables/{escape(table.name)}.csv</code> and '
        f"<code>tables/{escape(table.name)}.json</code></p>"
    )
    return "\n".join(parts)


def figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    caption = f"<figcaption>{escape(fig.caption)}</figcaption>" if fig.caption else ""
    return (
        f'<h3>{escape(fig.title)}</h3>\n<figure><img alt="{escape(fig.title)}" '
        f'src="data:image/png;base64,{data}">{caption}</figure>'
    )


def render_html(doc: Document) -> str:
    body = [f"<h1>{escape(doc.title)}</h1>", "<p>Inputs:</p>", "<ul>"]
    body += [f"<li><code>{escape(i)}</code></li>" for i in doc.inputs]
    body.append("</ul>")
    if doc.alerts:
        body.append(
            f'<div class="alert" role="alert"><strong>{len(doc.alerts)} problem(s): read these before the '
            "figures</strong><ul>"
        )
        body += [f"<li><strong>{escape(a)}</strong></li>" for a in doc.alerts]
        body.append("</ul></div>")
    for section in doc.sections:
        body.append(f"<h2>{escape(section.title)}</h2>")
        body += [f'<div class="alert">{escape(a)}</div>' for a in section.alerts]
        for note in section.notes:
            cls = "ok" if note.startswith("none:") else "note"
            body.append(f'<p class="{cls}">{escape(note)}</p>')
        body += [table_html(t, heading=t.title != section.title) for t in section.tables]
        body += [figure_html(f) for f in section.figures]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        # No network: forbid every fetch but inline styles and data: images.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">\n"
        f"<title>{escape(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
