"""One module per `python -m bench` subcommand: its `add_parser` and its run function;
and `arguments`, the options several commands declare alike.

Only `bench.cli` imports this wing. A command parses, checks its input before any work
(one line, exit 2) and hands over to the wing that does the work; it holds no logic that
another command or study needs.
"""
