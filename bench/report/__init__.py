"""A run folder's rows -> tables, charts and pages (report.md, report.html, results.csv,
pyperf.json, the terminal summary).

`build` is the entry; `frame` turns rows into a pandas frame, `document` and the
`*_section` modules into a document, `render_md`/`render_html` write it; `charts/` draws.
Only this wing (and `gate`'s pages) imports pandas and matplotlib. Never imports `run`.
"""
