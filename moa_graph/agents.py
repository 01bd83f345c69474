"""MoA for agents that keep their own model: a middleware that consults a panel, and a tool.

- `MoAMiddleware`: an agent middleware for ``langchain.agents.create_agent``. Before the agent's
  model is called, the proposers answer the conversation in text (without tools) and their
  answers are added to the request's system message as references, with the paper's
  Aggregate-and-Synthesize prompt: the agent's own model, with its tools, is the aggregator.
  Any agent becomes a MoA agent without changing its model.
- `ForceToolOnFirstCall`: a small middleware for models that call tools only when forced.
- `moa_tool`: the panel as a tool the acting model calls when it wants advice ("consult"), so
  the proposers are not re-run after every tool result. It returns the answer and keeps the
  records in the tool message's artifact.

Both run the MoA graph (`moa_graph.build_moa_graph`); neither re-implements it.
"""

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field

from moa_graph.chat_model import ChatMoA
from moa_graph.context import MoAContext
from moa_graph.graph import build_moa_graph
from moa_graph.references import inject_references
from moa_graph.run_summary import summarize
from moa_graph.tool_turns import render_tool_turns

__all__ = [
    "ForceToolOnFirstCall",
    "MoAMiddleware",
    "moa_tool",
]


Consult = Literal["every_call", "first_call"]


class MoAMiddleware(AgentMiddleware):
    """Consult a panel of proposers before the agent's model answers (``wrap_model_call``).

    The proposers of `context` (or the `proposers` instances) answer the conversation in text,
    without the agent's tools, seeing earlier tool calls and results as text; the last layer's
    answers go into the request's system message as references, after `context`'s
    ``aggregator_prompt`` (the paper's Aggregate-and-Synthesize prompt, arXiv 2406.04692,
    Table 1). The agent's model then answers, or calls its tools, as the aggregator.

    Args:
        context: The panel's settings (proposers, rounds, samples, timeouts, reference format);
            None uses ``MoAContext()``. Its aggregator settings are not used.
        proposers: Chat model instances to use instead of the context's proposer specs.
        consult: ``"first_call"`` (default): only on the first model call of a turn (the last
            message is the user's), so the panel is not asked again after every tool result;
            ``"every_call"``: before every model call.

    Raises:
        ProposerQuorumError: Fewer proposers than ``min_proposals`` answered.
    """

    def __init__(
        self,
        context: MoAContext | None = None,
        *,
        proposers: Sequence[BaseChatModel] | None = None,
        consult: Consult = "first_call",
    ):
        super().__init__()
        if consult not in ("first_call", "every_call"):
            raise ValueError(f"consult={consult!r}: use 'first_call' or 'every_call'")
        self.context = context or MoAContext()
        # A vote makes no aggregator call: the graph runs the proposers and keeps their records.
        self.panel = dataclasses.replace(
            self.context, aggregator_mode="vote", tools=None, tool_choice=None
        )
        self.consult = consult
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = build_moa_graph(
            proposers=proposers
        ).compile(name="moa_panel")

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> Any:
        """Add the panel's answers to the request, then call the agent's model."""
        if not self._consults(request):
            return handler(request)
        out = self.graph.invoke({"messages": self._question(request)}, context=self.panel)
        return handler(self._with_references(request, out))

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> Any:
        """Add the panel's answers to the request, then call the agent's model (async)."""
        if not self._consults(request):
            return await handler(request)
        out = await self.graph.ainvoke({"messages": self._question(request)}, context=self.panel)
        return await handler(self._with_references(request, out))

    def _consults(self, request: ModelRequest) -> bool:
        last = request.messages[-1] if request.messages else None
        return self.consult == "every_call" or isinstance(last, HumanMessage)

    def _question(self, request: ModelRequest) -> list[BaseMessage]:
        system = [request.system_message] if request.system_message else []
        return render_tool_turns([*system, *request.messages])

    def _with_references(self, request: ModelRequest, out: dict[str, Any]) -> ModelRequest:
        references = summarize(out)["references"]
        system: list[BaseMessage] = [request.system_message] if request.system_message else []
        injected = inject_references(
            system,
            references,
            self.context.aggregator_prompt,
            reference_format=self.context.reference_format,
        )
        first = injected[0]
        assert isinstance(first, SystemMessage)  # inject_references puts the references there
        return request.override(system_message=first)


class ForceToolOnFirstCall(AgentMiddleware):
    """Force one tool on the first model call of a turn, and leave the choice free after.

    For models that call a tool only when the caller forces the choice, as the embedded 135M
    model does (docs/notes.md, "Tools"): forcing it on every call would loop forever, since the
    model could never answer. The first call of a turn is the one whose last message is the
    user's.

    Args:
        tool: The name of the tool to force.
    """

    def __init__(self, tool: str):
        super().__init__()
        self.tool = tool

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> Any:
        """Force the tool when the last message is the user's."""
        return handler(self._forced(request))

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> Any:
        """Force the tool when the last message is the user's (async)."""
        return await handler(self._forced(request))

    def _forced(self, request: ModelRequest) -> ModelRequest:
        if request.messages and isinstance(request.messages[-1], HumanMessage):
            return request.override(tool_choice=self.tool)
        return request


class _Consultation(BaseModel):
    question: str = Field(description="The question to put to the panel of models.")
    context: str | None = Field(
        default=None, description="What the panel needs to know to answer, if anything."
    )


def moa_tool(
    model: ChatMoA,
    *,
    name: str = "consult_panel",
    description: str = "Ask a panel of models (Mixture-of-Agents) a hard question; returns "
    "their synthesized answer. Use it when one model's answer may not be good enough.",
) -> BaseTool:
    """Return MoA as a tool: a question (and optional context) in, the answer text out.

    The tool message's ``artifact`` holds the run's records (`ChatMoA`'s
    ``response_metadata``: the aggregation, each proposal, ``degraded``) and its usage.

    Args:
        model: The `ChatMoA` that answers (its settings are the panel's).
        name: The tool's name.
        description: What the calling model reads about it.

    Returns:
        A `StructuredTool` with ``response_format="content_and_artifact"``.
    """

    def messages(question: str, context: str | None) -> list[BaseMessage]:
        return [
            *([SystemMessage(context)] if context else []),
            HumanMessage(question),
        ]

    def answer(reply: AIMessage) -> tuple[str, dict[str, Any]]:
        return reply.text, {**reply.response_metadata, "usage": reply.usage_metadata}

    def consult(question: str, context: str | None = None) -> tuple[str, dict[str, Any]]:
        return answer(model.invoke(messages(question, context)))

    async def aconsult(question: str, context: str | None = None) -> tuple[str, dict[str, Any]]:
        return answer(await model.ainvoke(messages(question, context)))

    return StructuredTool.from_function(
        func=consult,
        coroutine=aconsult,
        name=name,
        description=description,
        args_schema=_Consultation,
        response_format="content_and_artifact",
    )
