"""The report's document as markdown (report.md)."""

from __future__ import annotations

from bench.report.document import Document, Table


def render_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    out += [f"- **{label}:** {_md(value)}" for label, value in doc.facts]
    out += ["", *[f"> {line}  " for line in doc.legend], ""]
    for section in doc.sections:
        out += [f"## {section.title}", ""]
        out += [line for text in section.paragraphs for line in (_md(text), "")]
        for table in section.tables:
            out += [f"### {table.title}", "", *_md_table(table), ""]
        if section.charts:
            out += ["### Charts", ""]
            out += [f"![{title}]({path}.png)" for title, path in section.charts]
            out += [""]
    if doc.notes:
        out += [f"## {doc.notes.title}", "", *_md_table(doc.notes), ""]
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(table: Table) -> list[str]:
    # Numbers right-aligned; the first column is a label.
    rule = " ---: " if table.numeric else " --- "
    lines = [
        "| " + " | ".join(_md(h) for h in table.header) + " |",
        "|" + "|".join([" --- "] + [rule] * (len(table.header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in table.rows]
    return lines
