"""Load generators and their shared contract.

At the top: the command line of the native load generator (`loadgen`), the options both
drivers share, and the contract every driver honours (`result`: the LoadResult document,
`target`, `wire`, `errors`, `http_reply`, `saturation`, `diagnosis`). The native
generator's insides live in `engine/`, locust's in `locust/`; neither imports the other.
Imports only `common`: never `servers` or `bench`.
"""
