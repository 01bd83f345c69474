"""Batch generation: MoA over many rows, resumable, rate-limited, with per-row records.

``moa-graph batch`` on the command line; `abatch_generate` and `batch_generate` from Python.
"""

from moa_graph.batch.rows import Fields, Row
from moa_graph.batch.runner import (
    BatchRunner,
    BatchStats,
    StopRule,
    abatch_generate,
    batch_generate,
)

__all__ = [
    "BatchRunner",
    "BatchStats",
    "Fields",
    "Row",
    "StopRule",
    "abatch_generate",
    "batch_generate",
]
