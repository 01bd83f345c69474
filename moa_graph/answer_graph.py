"""MoA as a question-in, answer-out graph: what an MCP client of ``langgraph dev`` calls.

LangGraph's server lists every graph of langgraph.json as an MCP tool at ``/mcp``: the tool's
input schema is the graph's input schema, and its result is the ``repr`` of the graph's output.
The MoA graph's output is the whole conversation and every record, so this graph wraps it: a
``question`` (and an optional ``context``) in, the ``answer`` text out, and the records
(`moa_graph.chat_model.response_metadata` of the run's `moa_graph.run_summary.summarize`, and
the usage) only when ``include_records`` asks.
"""

from typing import Annotated, Any, NotRequired

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from moa_graph.chat_model import response_metadata
from moa_graph.context import MoAContext
from moa_graph.run_summary import summarize


class Question(TypedDict):
    """A question for the panel (the MCP tool's arguments)."""

    question: Annotated[str, "The question to ask the panel of models."]
    context: NotRequired[Annotated[str, "Background the panel should use, if any."]]
    include_records: NotRequired[
        Annotated[bool, "Return each proposal's model, status, tokens and latency too."]
    ]


class Answer(TypedDict, total=False):
    """The panel's answer, and its records when asked for."""

    answer: str
    records: dict[str, Any]


class AnswerState(Question, Answer):
    """The graph's state: the question and its answer."""


def build_answer_graph(
    moa: CompiledStateGraph[Any, Any, Any, Any],
) -> StateGraph[AnswerState, MoAContext, Question, Answer]:
    """Build the question-in, answer-out graph around a compiled MoA graph (uncompiled).

    Args:
        moa: The compiled MoA graph (`moa_graph.build_moa_graph`); a run's context (the
            settings) reaches it unchanged, so its context guard applies.

    Returns:
        A `StateGraph` with one node, ``moa``: input `Question`, output `Answer`, context
        `MoAContext`.
    """

    async def ask(state: AnswerState, runtime: Runtime[MoAContext]) -> Answer:
        messages: list[BaseMessage] = [
            *([SystemMessage(state["context"])] if state.get("context") else []),
            HumanMessage(state["question"]),
        ]
        out = await moa.ainvoke({"messages": messages}, context=runtime.context)
        summary = summarize(out)
        answer = Answer(answer=summary["answer"])
        if state.get("include_records"):
            answer["records"] = {**response_metadata(summary, "moa"), "usage": summary["usage"]}
        return answer

    builder = StateGraph(
        AnswerState, context_schema=MoAContext, input_schema=Question, output_schema=Answer
    )
    builder.add_node("moa", ask)
    builder.add_edge(START, "moa")
    builder.add_edge("moa", END)
    return builder
