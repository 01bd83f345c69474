"""The answer's part of a graph's ``"messages"`` stream: the aggregator's text and tool calls.

`moa_graph.ChatMoA` streams it as chat-model chunks and ``moa-graph serve`` as OpenAI deltas.
Proposers' tokens are not the answer and are left out.
"""

import json
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk


class AnswerStream:
    """The answer's chunks from one run's ``"messages"`` stream (make one per run).

    Each tool call's ``name`` and ``id`` come in its first fragment only, as OpenAI and
    LangChain's chunk merging expect: llama.cpp's server repeats them on every fragment, which
    merged would read ``"addaddadd"``.
    """

    def __init__(self) -> None:
        self._started: set[int] = set()

    def chunk(self, part: tuple[BaseMessage, dict[str, Any]]) -> AIMessageChunk | None:
        """Return the aggregator's streamed text or tool-call fragment as a chunk of the answer.

        Args:
            part: One ``(message, metadata)`` of ``stream_mode="messages"``.

        Returns:
            A chunk with the text and the ``tool_call_chunks`` (``index``, ``id``, ``name``,
            ``args`` fragment); a reply that was not streamed (a vote's) comes whole, its calls
            as one fragment each. None for other nodes' messages and for empty chunks.
        """
        message, metadata = part
        if metadata.get("langgraph_node") != "aggregator":
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
        calls = []
        for fragment in fragments:
            index = fragment.get("index") or 0
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
        if not message.text and not calls:
            return None
        return AIMessageChunk(content=message.text, tool_call_chunks=calls)
