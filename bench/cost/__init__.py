"""Counted costs: instructions and system calls per request, counted, not timed.

Each model's server runs under a counter (cachegrind for instructions, strace for
system calls, callgrind for functions: `tools`) while a deterministic client (`pattern`)
sends a fixed number of requests; two request counts give the slope, the cost of one
request, with start-up and shut-down cancelled (`measure`). The counts do not depend on
the machine's speed, only on the interpreter build, valgrind and the architecture, which
the record (`record`) keeps beside them; `page` writes cost.md. docs/cost.md says what
the counts see and what they do not (the kernel's work).

May import `run` (to start a server), the records and `clients`' contract; not
`report`, `gate` or `commands`.
"""
