"""Plumbing that servers, clients and bench share, so that none imports another's.

`cli`: argparse with one-line usage errors and the number types; `cpus`: CPU lists as
taskset spells them; `cpustat`: /proc/stat CPU time; `process`: a child that dies with its
parent, descriptor limits; `invocation`: commands printed so they run as shown; `migrate`:
versioned documents upgraded one step at a time; `text`: words for counts.
Nothing here knows about models, protocols or results.
"""
