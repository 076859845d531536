"""Why a model costs what it does: system calls and perf samples per request
(`measure`, `perf`) and their page (`report`).

May import `run` (to start a server and sample it), the records and `clients`' contract;
not `report`, `gate` or `commands`: its page is plain markdown, no pandas.
"""
