"""The native load generator's insides: configuration and plans, the worker processes
and their non-blocking loops, connections, histograms, and merging the workers' results.

Never imports `clients.locust` (locust monkey-patches socket and select through gevent).
"""
