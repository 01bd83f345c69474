"""The MoA graph as LangGraph Studio loads it (see langgraph.json).

Compiled without a checkpointer: `langgraph dev` supplies its own persistence and refuses a
graph that brings one. With ``MOA_SERVE_GUARD_CONTEXT=true`` every run's context is checked
against the operator's policy (`moa_graph.trust`): callers of the server's HTTP API, Studio or
``/mcp`` cannot choose models, endpoints or budgets beyond the operator's.
"""

from moa_graph import build_moa_graph
from moa_graph.trust import guard_from_environment

graph = build_moa_graph(context_guard=guard_from_environment()).compile(name="moa")
