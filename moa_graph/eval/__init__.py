"""Evaluation: does MoA beat the best single model on your models? With intervals and cost.

``moa-graph eval`` on the command line; `run_eval` / `arun_eval` from Python, returning an
`EvalReport`. Suites are in `moa_graph.eval.suites`, systems in `moa_graph.eval.systems`, the
judge in `moa_graph.eval.judge`, the statistics in `moa_graph.eval.stats`; `choose_panel`
picks the proposers from your data (`moa_graph.eval.panel`).
"""

from moa_graph.eval.artifacts import export_alpaca_eval, write_artifacts
from moa_graph.eval.panel import PanelChoice, achoose_panel, choose_panel
from moa_graph.eval.report import Comparison, EvalReport, SystemResult
from moa_graph.eval.runner import arun_eval, run_eval
from moa_graph.eval.suites import Item, Suite, load_suite

__all__ = [
    "Comparison",
    "EvalReport",
    "Item",
    "PanelChoice",
    "Suite",
    "SystemResult",
    "achoose_panel",
    "arun_eval",
    "choose_panel",
    "export_alpaca_eval",
    "load_suite",
    "run_eval",
    "write_artifacts",
]
