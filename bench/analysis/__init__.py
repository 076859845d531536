"""Pure functions on numbers: statistics, paired tests, change points, curves, searches,
verdicts.

Imports only `common` and the records (`bench.record`, `clients.result`); no pandas,
matplotlib, files, processes or clocks, so every function is tested on made-up numbers.
"""
