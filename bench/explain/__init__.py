"""Why a model costs what it does: system calls and perf samples per request
(`measure`, `perf`) and their page (`report`).
"""
