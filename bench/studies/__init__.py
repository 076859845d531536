"""One-off studies, each run as `python -m bench.studies.NAME` (crosscheck against wrk,
scaling over server CPUs, the load generator's A/B, the gate's power, the history's
false alarms). They may import any wing; nothing imports them.
"""
