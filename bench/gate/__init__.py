"""Comparing code and runs: `compare` (two runs), `ab` (two checkouts, paired and
interleaved), the nightly `history` and their pages.

May import `run` (to run A/B cells), `analysis`, `report` and the records.
"""
