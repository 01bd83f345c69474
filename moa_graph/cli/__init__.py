"""The ``moa-graph`` command line: one module per command, shared options in `options`.

No library module imports this package: batch, eval and serving are libraries, and these
modules only parse options and print.
"""

from moa_graph.cli.main import main

__all__ = ["main"]
