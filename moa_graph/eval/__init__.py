"""Evaluation: does MoA beat the best single model on your models? With intervals and cost.

``moa-graph eval`` on the command line; `run_eval` / `arun_eval` from Python, returning an
`EvalReport`. Suites are in `moa_graph.eval.suites`, systems in `moa_graph.eval.systems`, the
judge in `moa_graph.eval.judge`, the statistics in `moa_graph.eval.stats`.
"""

from moa_graph.eval.artifacts import export_alpaca_eval, write_artifacts
from moa_graph.eval.report import Comparison, EvalReport, SystemResult
from moa_graph.eval.runner import arun_eval, run_eval
from moa_graph.eval.suites import Item, Suite, load_suite

__all__ = [
    "Comparison",
    "EvalReport",
    "Item",
    "Suite",
    "SystemResult",
    "arun_eval",
    "export_alpaca_eval",
    "load_suite",
    "run_eval",
    "write_artifacts",
]
