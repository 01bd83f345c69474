"""A run as it happens, through the core's one door: the answer's chunks, progress, the end.

`stream_answer` and `astream_answer` run the graph and yield the answer's chunks (text and
tool-call fragments, from the answer nodes only, `moa_graph.graph.ANSWER_NODES`), optionally
the layers and proposals as they finish, and last a `RunFinished` with the final state and its
`moa_graph.run_summary.RunSummary`. `moa_graph.ChatMoA` streams the chunks as chat-model
chunks, ``moa-graph serve`` as OpenAI deltas, ``moa-graph ask`` to the terminal; none of them
names a node or a layer. Proposers' tokens are not the answer and are left out.
"""

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StreamMode

from moa_graph.context import MoAContext
from moa_graph.graph import ANSWER_NODES
from moa_graph.run_summary import RunSummary, summarize
from moa_graph.state import Proposal

__all__ = [
    "LayerStarted",
    "ProposalDone",
    "RunFinished",
    "astream_answer",
    "stream_answer",
]


@dataclass(frozen=True)
class LayerStarted:
    """A layer's proposers were sent (`moa_graph.state.FIRST_STAGE`: a cascade's first stage)."""

    layer: int


@dataclass(frozen=True)
class ProposalDone:
    """A proposer call finished: its record (answered, failed, timed out or cut off)."""

    record: Proposal


@dataclass(frozen=True)
class RunFinished:
    """The run ended: its final state (the graph's output) and what it says."""

    state: dict[str, Any]
    summary: RunSummary


Event = AIMessageChunk | LayerStarted | ProposalDone | RunFinished
"""What `stream_answer` yields: the answer's chunks, progress (when asked), and the end."""


def stream_answer(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    inputs: Any,
    config: RunnableConfig | None = None,
    *,
    context: MoAContext | None,
    progress: bool = False,
    answer_tool: str | None = None,
) -> Iterator[Event]:
    """Run `graph` on `inputs` and yield the answer's chunks, then `RunFinished` (sync form).

    Args:
        graph: A compiled `moa_graph.build_moa_graph` graph.
        inputs: Its input (``{"messages": [...]}``).
        config: The run's config (callbacks, tags, thread).
        context: The run's settings.
        progress: Also yield `LayerStarted` and `ProposalDone` as they happen.
        answer_tool: A schema's tool whose arguments are the answer (see `AnswerStream`).

    Yields:
        `AIMessageChunk` pieces of the answer (text and tool-call fragments, each call's name
        and id in its first fragment only), progress events, and last one `RunFinished`.

    Raises:
        Exception: What the run raises (`moa_graph.MoAConfigError`, ...).
    """
    answer, modes = AnswerStream(answer_tool), _modes(progress)
    final: dict[str, Any] = {}
    for mode, part in graph.stream(inputs, config, context=context, stream_mode=modes):
        if mode == "values":
            final = cast(dict[str, Any], part)
        else:
            yield from _events(answer, mode, part)
    yield RunFinished(final, summarize(final))


async def astream_answer(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    inputs: Any,
    config: RunnableConfig | None = None,
    *,
    context: MoAContext | None,
    progress: bool = False,
    answer_tool: str | None = None,
) -> AsyncIterator[Event]:
    """Run `graph` on `inputs` and yield the answer's chunks, then `RunFinished` (async form).

    The same as `stream_answer`.
    """
    answer, modes = AnswerStream(answer_tool), _modes(progress)
    final: dict[str, Any] = {}
    async for mode, part in graph.astream(inputs, config, context=context, stream_mode=modes):
        if mode == "values":
            final = cast(dict[str, Any], part)
        else:
            for event in _events(answer, mode, part):
                yield event
    yield RunFinished(final, summarize(final))


def _modes(progress: bool) -> list[StreamMode]:
    modes: list[StreamMode] = ["messages", "values"]
    return [*modes, "tasks"] if progress else modes


def _events(answer: "AnswerStream", mode: str, part: Any) -> Iterator[Event]:
    if mode == "messages":
        if (chunk := answer.chunk(part)) is not None:
            yield chunk
    elif "result" in part and part.get("result"):  # a task that finished
        result = dict(part["result"])
        if part["name"] == "layer":
            yield LayerStarted(result["layer"])
        elif part["name"] == "proposer":
            for record in result.get("proposals", []):
                yield ProposalDone(record)


class AnswerStream:
    """The answer's chunks from one run's ``"messages"`` stream (make one per run).

    Each tool call's ``name`` and ``id`` come in its first fragment only, as OpenAI and
    LangChain's chunk merging expect: llama.cpp's server repeats them on every fragment, which
    merged would read ``"addaddadd"``.

    Args:
        answer_tool: The name of a schema's tool whose arguments are the answer's object
            (`moa_graph.MoAContext.with_tools`): its fragments come as the answer's text.
    """

    def __init__(self, answer_tool: str | None = None) -> None:
        self._started: set[int] = set()
        self._answer_tool = answer_tool
        self._names: dict[int, str] = {}

    def chunk(self, part: tuple[BaseMessage, dict[str, Any]]) -> AIMessageChunk | None:
        """Return an answer node's streamed text or tool-call fragment as a chunk of the answer.

        Args:
            part: One ``(message, metadata)`` of ``stream_mode="messages"``.

        Returns:
            A chunk with the text and the ``tool_call_chunks`` (``index``, ``id``, ``name``,
            ``args`` fragment); a reply that was not streamed (a vote's, a cascade's) comes
            whole, its calls as one fragment each. None for other nodes' messages and for
            empty chunks.
        """
        message, metadata = part
        if metadata.get("langgraph_node") not in ANSWER_NODES:
            return None
        if isinstance(message, AIMessageChunk):
            fragments = message.tool_call_chunks
        elif isinstance(message, AIMessage):
            fragments = [
                tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
                for i, c in enumerate(message.tool_calls)
            ]
        else:
            return None
        calls, text = [], str(message.text)
        for fragment in fragments:
            index = fragment.get("index") or 0
            if name := fragment.get("name"):
                self._names[index] = name
            if self._answer_tool is not None and self._names.get(index) == self._answer_tool:
                text += fragment.get("args") or ""  # the schema's object is the answer's text
                continue
            first = index not in self._started
            self._started.add(index)
            calls.append(
                tool_call_chunk(
                    name=fragment.get("name") if first else None,
                    args=fragment.get("args"),
                    id=fragment.get("id") if first else None,
                    index=index,
                )
            )
        if not text and not calls:
            return None
        return AIMessageChunk(content=text, tool_call_chunks=calls)
