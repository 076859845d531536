"""Driving locust: the command line (`driver`), locust's process group (`process`), its
/proc sampler (`sampler`), locust's files to a LoadResult (`result`, pure) and the
locustfile itself.

Never imports `clients.engine`. The locustfile is loaded by locust by file path and imports
no `clients` module.
"""
