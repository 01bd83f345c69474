"""Example agent: the MoA graph as the model node of a hand-written tool loop.

    START -> moa (the compiled MoA graph, as a subgraph) -("tools")-> tools -> moa
                                                         -("end")-> END

The MoA node runs with `MoAContext.tools` set: the proposers answer in text, the aggregator
acts, and its tool calls go to LangGraph's `ToolNode`; the next MoA turn sees the tool result
(the proposers as text). The embedded 135M model calls a tool only when the caller forces the
choice (docs/notes.md, "Tools"), so this agent forces the `calculate` tool on the first model
call of a turn and leaves the choice to the model after a tool result: forcing it on every
call would loop forever.
"""

import dataclasses
from typing import Any, Literal

from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from moa_graph import MoAContext, build_moa_graph
from moa_graph.run_scope import adopt_context, run_context
from moa_graph.trust import guard_from_environment


@tool
def calculate(op: Literal["+", "-", "*", "/"], a: float, b: float) -> float:
    """Compute a op b for two numbers; op is one of + - * /."""
    if op == "/":
        return a / b
    return {"+": a + b, "-": a - b, "*": a * b}[op]


TOOLS = [calculate]
FORCE_FIRST = {"type": "function", "function": {"name": "calculate"}}


def build_moa_agent() -> StateGraph[MessagesState, MoAContext, MessagesState, MessagesState]:
    """Build the tool loop around the MoA graph, uncompiled (context schema: `MoAContext`)."""
    guard = guard_from_environment()
    moa = build_moa_graph(context_guard=guard).compile(name="moa")

    async def answer(state: MessagesState) -> dict[str, Any]:
        """Run MoA with the tools; force the tool on the first call of a turn.

        The caller's context is admitted first (it cannot set tools); the tools are the
        graph's own, so the context that carries them is adopted for the run.
        """
        first_call = isinstance(state["messages"][-1], HumanMessage)
        context = dataclasses.replace(
            run_context(guard),
            tools=[convert_to_openai_tool(t) for t in TOOLS],
            tool_choice=FORCE_FIRST if first_call else None,
        )
        adopt_context(context)
        out = await moa.ainvoke({"messages": state["messages"]}, context=context)
        return {"messages": [out["messages"][-1]]}

    def route(state: MessagesState) -> Literal["tools", "end"]:
        """Run the tools the answer called, or end."""
        return "tools" if tools_condition(state) == "tools" else "end"

    builder = StateGraph(MessagesState, context_schema=MoAContext)
    builder.add_node("moa", answer)
    builder.add_node("tools", ToolNode(TOOLS))
    builder.add_edge(START, "moa")
    builder.add_conditional_edges("moa", route, {"tools": "tools", "end": END})
    builder.add_edge("tools", "moa")
    return builder


graph = build_moa_agent().compile(name="moa_agent")
"""What `langgraph dev` loads (compiled without a checkpointer, as it requires)."""
