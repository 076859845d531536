"""The harness: runs the matrix of cells, stores one row per cell, reports, gates.

Data flows one way through the wings: `commands` (one module per `python -m bench`
subcommand) -> `run` (matrix, servers, load, samplers: one row per cell) -> the row
(`record`) in the run folder (`store`) -> `analysis` (pure statistics) -> `report`
(tables, charts, pages). `gate` compares code and runs, `explain` counts where a model's
time goes, `studies` are one-off studies run as `python -m bench.studies.NAME`.
Here at the top: the entry point (`__main__`, `cli`), the row record and the store.
"""
