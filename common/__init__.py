"""Plumbing that servers, clients and bench share, so that none imports another's.

`cli`: argparse with one-line usage errors and the number types; `cpus`: CPU lists as
taskset spells them; `process`: a child that dies with its parent, descriptor limits.
Nothing here knows about models, protocols or results.
"""
