"""The MoA answer for MCP clients and other question-in, answer-out callers (langgraph.json).

``langgraph dev`` lists it at ``/mcp`` as the tool ``moa_answer``: a ``question`` (optional
``context`` and ``include_records``) in, the ``answer`` out (`moa_graph.answer_graph`). With
``MOA_SERVE_GUARD_CONTEXT=true`` a call's context cannot choose models, endpoints or budgets
beyond the operator's (`moa_graph.trust`).
"""

from moa_graph import build_moa_graph
from moa_graph.answer_graph import build_answer_graph
from moa_graph.trust import guard_from_environment

moa = build_moa_graph(context_guard=guard_from_environment()).compile(name="moa")
graph = build_answer_graph(moa).compile(name="moa_answer")
