"""The MoA graph as LangGraph Studio loads it (see langgraph.json).

Compiled without a checkpointer: `langgraph dev` supplies its own persistence and refuses a
graph that brings one.
"""

from moa_graph import build_moa_graph

graph = build_moa_graph().compile(name="moa")
