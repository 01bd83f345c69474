"""``python -m moa_graph.cli``: the ``moa-graph`` command."""

import sys

from moa_graph.cli.main import main

sys.exit(main())
