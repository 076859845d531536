"""Running cells: the matrix, the CPU plan, server processes, samplers, the runner.

May import `analysis`, the records, `clients` (to start the load generators) and
`servers`; never `report`, `gate` or `commands`.
"""
