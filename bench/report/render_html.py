"""The report as one self-contained HTML file: tables as HTML, charts inlined.

Charts are embedded as SVG data URIs in <img> tags: vector, readable offline, and each
image keeps its own id namespace (several inline <svg> elements could clash).
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from bench.report.document import Document, Table

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 72em; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; margin-bottom: .3em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
.legend { color: #555; font-size: .9em; border-left: 3px solid #ddd; padding-left: .8em; }
table { border-collapse: collapse; margin: .3em 0 1.2em; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; }
th { background: #f4f4f4; }
table.numeric td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.wide { overflow-x: auto; }
table.numeric td:first-child { text-align: left; }
td.failed { color: #b00020; font-weight: 600; } td.skipped { color: #888; }
figure { margin: 1em 0 2em; } figure img { width: 100%; max-width: 68em; height: auto; }
table:not(.numeric) td:not(:last-child) { white-space: nowrap; }
"""


def render_html(doc: Document, run_dir: Path) -> str:
    """The whole page; chart files are read from `run_dir` and embedded."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(doc.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(doc.title)}</h1>",
        '<dl class="facts">',
    ]
    out += [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in doc.facts]
    out += ["</dl>", '<div class="legend">']
    out += [f"<p>{escape(line)}</p>" for line in doc.legend]
    out.append("</div>")
    for section in doc.sections:
        out.append(f"<h2>{escape(section.title)}</h2>")
        out += [f"<p>{escape(text)}</p>" for text in section.paragraphs]
        for table in section.tables:
            out += [f"<h3>{escape(table.title)}</h3>", html_table(table)]
        for title, stem in section.charts:
            out.append(f"<figure>{_image(run_dir / (stem + '.svg'), title)}</figure>")
    if doc.notes:
        out += [f"<h2>{escape(doc.notes.title)}</h2>", html_table(doc.notes)]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def html_table(table: Table) -> str:
    cls = ' class="numeric"' if table.numeric else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = "".join(
            f'<td class="{escape(c)}">{escape(c)}</td>'
            if c in ("failed", "skipped")
            else f"<td>{escape(c)}</td>"
            for c in row
        )
        body.append(f"<tr>{cells}</tr>")
    table_html = f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="wide">{table_html}</div>'  # wide tables scroll, the page does not


def _image(path: Path, title: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(title)}" src="data:image/svg+xml;base64,{data}">'
