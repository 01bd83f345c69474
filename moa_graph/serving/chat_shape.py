"""The Chat Completions and Completions shapes of a reply: JSON, and server-sent events.

Streaming sends the role chunk at once, empty-delta heartbeats while the proposers run, the
answer's text and tool-call deltas (index, id, name, argument fragments), one ``finish_reason``
with the ``moa`` field, the usage chunk when asked, then ``[DONE]``; a failure is an error event.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from openai.types import Completion, CompletionChoice, CompletionUsage
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageToolCallUnion,
)
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from openai.types.chat.chat_completion_message_function_tool_call import Function

from moa_graph.run_summary import RunSummary
from moa_graph.serving.answers import (
    CallDelta,
    Event,
    Failed,
    Finished,
    Heartbeat,
    Reply,
    TextDelta,
)

PANEL_HEADER = "x-moa-proposals"
"""Response header: ``answered/asked`` proposals of the layer the answer was made from
(``2/3``)."""


def completion(reply: Reply, model: str, include_analysis: bool) -> dict[str, Any]:
    """Return the ``chat.completion`` object of `reply`, with its ``moa`` field."""
    calls: list[ChatCompletionMessageToolCallUnion] = [
        ChatCompletionMessageFunctionToolCall(
            id=c.id, type="function", function=Function(name=c.name, arguments=c.arguments)
        )
        for c in reply.calls
    ]
    message = ChatCompletionMessage(
        role="assistant", content=reply.text or (None if calls else ""), tool_calls=calls or None
    )
    done = ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}", object="chat.completion", created=int(time.time()),
        model=model, usage=usage(reply.summary),
        choices=[Choice(index=0, finish_reason=reply.finish, message=message)],
    )  # fmt: skip
    return {**done.model_dump(exclude_none=True), "moa": moa_field(reply.summary, include_analysis)}


async def completion_events(
    events: AsyncIterator[Event], model: str, *, include_usage: bool, include_analysis: bool
) -> AsyncIterator[str]:
    """The SSE lines of a streamed ``chat.completion``."""
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: ChoiceDelta, finish: Any = None, used: Any = None, moa: Any = None) -> str:
        choices = [] if used else [ChunkChoice(index=0, delta=delta, finish_reason=finish)]
        event = ChatCompletionChunk(
            id=chunk_id, object="chat.completion.chunk", created=created, model=model,
            choices=choices, usage=used,
        )  # fmt: skip
        fields = event.model_dump(mode="json", exclude_unset=True)
        return f"data: {json.dumps({**fields, 'moa': moa} if moa else fields)}\n\n"

    yield chunk(ChoiceDelta(role="assistant", content=""))
    async for event in events:
        if isinstance(event, Heartbeat):
            yield chunk(ChoiceDelta())  # keeps clients with a chunk timeout waiting
        elif isinstance(event, TextDelta):
            yield chunk(ChoiceDelta(content=event.text))
        elif isinstance(event, CallDelta):
            call: dict[str, Any] = {"index": event.index}
            if event.id:
                call |= {"id": event.id, "type": "function"}
            call["function"] = {k: v for k, v in (("name", event.name),
                                                 ("arguments", event.arguments)) if v}  # fmt: skip
            yield chunk(ChoiceDelta.model_validate({"tool_calls": [call]}))
        elif isinstance(event, Failed):
            yield f"data: {json.dumps(event.error.body())}\n\n"
            return
        elif isinstance(event, Finished):
            summary = event.reply.summary
            # The finishing chunk says how many proposals went into the answer (the headers
            # are long gone when streaming).
            yield chunk(ChoiceDelta(), event.reply.finish, moa=moa_field(summary, include_analysis))
            if include_usage:
                yield chunk(ChoiceDelta(), used=usage(summary))
    yield "data: [DONE]\n\n"


def text_completion(reply: Reply, model: str) -> dict[str, Any]:
    """Return the ``text_completion`` object of `reply` (``POST /v1/completions``)."""
    done = Completion(
        id=f"cmpl-{uuid.uuid4().hex}", object="text_completion", created=int(time.time()),
        model=model, usage=usage(reply.summary),
        choices=[CompletionChoice(index=0, text=reply.text,
                                  finish_reason="length" if reply.finish == "length" else "stop")],
    )  # fmt: skip
    return done.model_dump(exclude_none=True)


async def text_completion_events(events: AsyncIterator[Event], model: str) -> AsyncIterator[str]:
    """The SSE lines of a streamed ``text_completion`` (heartbeats as SSE comments)."""
    cmpl_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def piece(text: str, finish: Any = None) -> str:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        body = {"id": cmpl_id, "object": "text_completion", "created": created, "model": model,
                "choices": [choice]}  # fmt: skip
        return f"data: {json.dumps(body)}\n\n"

    async for event in events:
        if isinstance(event, Heartbeat):
            yield ": proposers working\n\n"
        elif isinstance(event, TextDelta):
            yield piece(event.text)
        elif isinstance(event, Failed):
            yield f"data: {json.dumps(event.error.body())}\n\n"
            return
        elif isinstance(event, Finished):
            yield piece("", "length" if event.reply.finish == "length" else "stop")
    yield "data: [DONE]\n\n"


def moa_field(summary: RunSummary, include_analysis: bool) -> dict[str, Any]:
    """The answer's ``moa`` field: the panel's status, and the fusion judge's analysis if asked."""
    field: dict[str, Any] = {
        "proposals_asked": summary["proposals_asked"],
        "proposals_answered": summary["proposals_answered"],
        "degraded": summary["degraded"],
    }
    if include_analysis:
        field["analysis"] = summary["aggregation"].get("analysis")
    return field


def panel_header(summary: RunSummary) -> dict[str, str]:
    """The ``x-moa-proposals`` header: ``answered/asked``."""
    return {PANEL_HEADER: f"{summary['proposals_answered']}/{summary['proposals_asked']}"}


def usage(summary: RunSummary) -> CompletionUsage:
    """The sum over every model call of the run: proposers and aggregator."""
    total = summary["usage"]
    return CompletionUsage(
        prompt_tokens=total["input_tokens"],
        completion_tokens=total["output_tokens"],
        total_tokens=total["total_tokens"],
    )
