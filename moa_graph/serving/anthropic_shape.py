"""Anthropic's Messages API shape (``POST /v1/messages``): request, reply and events.

A request becomes a `moa_graph.serving.requests.ChatRequest` and goes through the same code
path as Chat Completions (trust policy, schema checks, budgets, the forced tool choice):
``system`` (a string or text blocks) a system message; ``messages`` with ``text``,
``tool_use`` (assistant) and ``tool_result`` (user) blocks chat messages and tool turns;
``tools`` (``name``, ``description``, ``input_schema``) function tools; ``tool_choice``
``auto`` / ``any`` / ``tool`` / ``none`` as ``auto`` / ``required`` / a named function /
``none`` (``disable_parallel_tool_use`` as ``parallel_tool_calls: false``); ``max_tokens``
(required, as Anthropic requires it), ``temperature`` and ``top_p`` (which older clients
send), ``stop_sequences``; ``output_config.format`` (structured output: a JSON Schema the
text must fit) a JSON ``response_format``; and the ``moa`` object as on chat completions.
``metadata`` and Anthropic's service hints (`IGNORED`) are accepted and ignored; any other
field, and blocks other than text and tools (images, documents, server tools), are a 400 that
names them. Thinking blocks of earlier turns are left out.

The reply is a ``message``: ``content`` blocks (``text``, ``tool_use`` with its id and
``input``), ``stop_reason`` (``end_turn``; ``tool_use``; ``max_tokens`` when the answer was
cut off; ``stop_sequence`` when the server cut the text at one of the request's
``stop_sequences``, which the aggregator is also given, so a model that stops on its own
reports ``end_turn``) and ``usage`` (every call of the run, as on chat completions). Streamed:
``message_start``, ``ping`` (also while the proposers work), per block
``content_block_start`` / ``content_block_delta`` (``text_delta``, ``input_json_delta``) /
``content_block_stop``, then ``message_delta`` (stop reason and usage) and ``message_stop``;
a failure is an ``error`` event. Errors are Anthropic's
``{"type": "error", "error": {"type", "message"}}`` (`moa_graph.serving.errors`).

Follows Anthropic's API reference (docs.anthropic.com/en/api/messages and
docs.anthropic.com/en/api/messages-streaming).
"""

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from moa_graph.serving.answers import (
    CallDelta,
    Event,
    Failed,
    Finished,
    Heartbeat,
    Reply,
    TextDelta,
)
from moa_graph.serving.errors import anthropic_error, invalid_param
from moa_graph.serving.requests import ChatRequest

IGNORED = frozenset(
    {"metadata", "service_tier", "cache_control", "inference_geo", "speed", "user_profile_id",
     "workspace_id", "diagnostics"}
)  # fmt: skip
"""Fields accepted and ignored: attribution, caching and capacity hints of Anthropic's own
service, which mean nothing here."""

STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


class MessagesRequest(BaseModel):
    """The body of ``POST /v1/messages`` (the fields this server acts on)."""

    model_config = ConfigDict(extra="allow")
    model: str
    max_tokens: int = Field(ge=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    output_config: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    stream: bool = False
    moa: dict[str, Any] | None = None
    include_analysis: bool = False


def to_chat_request(body: MessagesRequest) -> ChatRequest:
    """Return the chat request `body` asks for.

    Raises:
        APIError: 400 naming the field: an unknown field, ``top_k``, enabled ``thinking``, a
            block or tool this server does not take, a malformed ``tool_choice``.
    """
    for name in body.model_extra or {}:
        if name not in IGNORED:
            raise invalid_param(name, "is not a field this server acts on; remove it")
    if body.top_k is not None:
        raise invalid_param("top_k", "is not supported: use temperature or top_p")
    if body.thinking and body.thinking.get("type") != "disabled":
        raise invalid_param("thinking", "is not supported: MoA's proposers are its deliberation")
    chat: dict[str, Any] = {
        "model": body.model,
        "messages": _messages(body),
        "stream": body.stream,
        "max_tokens": body.max_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "stop": body.stop_sequences or None,
        "moa": body.moa,
        "include_analysis": body.include_analysis,
    }
    if body.tools:
        chat["tools"] = [_chat_tool(i, tool) for i, tool in enumerate(body.tools)]
    if body.tool_choice is not None:
        chat["tool_choice"], parallel = _tool_choice(body.tool_choice)
        chat["parallel_tool_calls"] = parallel
    if body.output_config:
        chat["response_format"] = _response_format(body.output_config)
    return ChatRequest(**{k: v for k, v in chat.items() if v is not None})


def message(reply: Reply, model: str, message_id: str | None = None) -> dict[str, Any]:
    """Return the ``message`` object of `reply`."""
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments)}
                for c in reply.calls]  # fmt: skip
    return {
        **_message(model, message_id or f"msg_{uuid.uuid4().hex}", content),
        "stop_reason": _stop_reason(reply),
        "stop_sequence": reply.stop_sequence,
        "usage": _usage(reply),
    }


async def message_events(events: AsyncIterator[Event], model: str) -> AsyncIterator[str]:
    """The SSE events of a streamed message (see the module)."""

    def sse(kind: str, fields: dict[str, Any]) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n"

    started = {**_message(model, f"msg_{uuid.uuid4().hex}", []), "stop_reason": None,
               "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}  # fmt: skip
    yield sse("message_start", {"message": started})
    yield sse("ping", {})
    blocks: list[str] = []  # "text" or "call:N", in the order they started
    async for event in events:
        if isinstance(event, Heartbeat):
            yield sse("ping", {})
        elif isinstance(event, TextDelta | CallDelta):
            key = "text" if isinstance(event, TextDelta) else f"call:{event.index}"
            if not blocks or blocks[-1] != key:
                if blocks:
                    yield sse("content_block_stop", {"index": len(blocks) - 1})
                blocks.append(key)
                block = (
                    {"type": "text", "text": ""}
                    if isinstance(event, TextDelta)
                    else {"type": "tool_use", "id": event.id or f"toolu_{uuid.uuid4().hex}",
                          "name": event.name or "", "input": {}}
                )  # fmt: skip
                yield sse("content_block_start", {"index": len(blocks) - 1, "content_block": block})
            delta = (
                {"type": "text_delta", "text": event.text}
                if isinstance(event, TextDelta)
                else {"type": "input_json_delta", "partial_json": event.arguments}
            )
            if delta.get("text") or delta.get("partial_json"):
                yield sse("content_block_delta", {"index": len(blocks) - 1, "delta": delta})
        elif isinstance(event, Failed):
            yield sse("error", anthropic_error(event.error))
            return
        elif isinstance(event, Finished):
            if blocks:
                yield sse("content_block_stop", {"index": len(blocks) - 1})
            reply = event.reply
            yield sse("message_delta", {
                "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": reply.stop_sequence},
                "usage": _usage(reply)})  # fmt: skip
            yield sse("message_stop", {})


def _message(model: str, message_id: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": content}  # fmt: skip


def _stop_reason(reply: Reply) -> str:
    return "stop_sequence" if reply.stop_sequence is not None else STOP_REASONS[reply.finish]


def _usage(reply: Reply) -> dict[str, int]:
    total = reply.summary["usage"]
    return {"input_tokens": total["input_tokens"], "output_tokens": total["output_tokens"]}


def _messages(body: MessagesRequest) -> list[dict[str, Any]]:
    """The conversation as chat messages: a user turn's tool results become tool messages."""
    messages: list[dict[str, Any]] = []
    if body.system:
        system = body.system
        if not isinstance(system, str):
            system = "\n\n".join(_text_block(f"system[{j}]", b) for j, b in enumerate(system))
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(body.messages):
        role, content = turn.get("role"), turn.get("content")
        if role not in ("user", "assistant"):
            raise invalid_param(f"messages[{i}].role", "must be 'user' or 'assistant'")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise invalid_param(f"messages[{i}].content", "must be a string or a list of blocks")
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for j, block in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                texts.append(_text_block(where, block))
            elif kind == "tool_use" and role == "assistant":
                function = {"name": block.get("name"),
                            "arguments": json.dumps(block.get("input") or {})}  # fmt: skip
                calls.append({"id": block.get("id"), "type": "function", "function": function})
            elif kind == "tool_result" and role == "user":
                messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                                 "content": _result_text(where, block)})  # fmt: skip
            elif kind in ("thinking", "redacted_thinking") and role == "assistant":
                continue  # an earlier turn's reasoning: not the conversation
            else:
                raise invalid_param(f"{where}.type", f"{kind!r} blocks are not supported in "
                               f"{role} messages: send text, tool_use or tool_result")  # fmt: skip
        if role == "assistant" and (texts or calls):
            reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
            messages.append(reply | ({"tool_calls": calls} if calls else {}))
        elif role == "user" and texts:
            parts = [{"type": "text", "text": text} for text in texts]
            messages.append({"role": "user", "content": parts})
    return messages


def _text_block(where: str, block: Any) -> str:
    if not isinstance(block, dict) or block.get("type") != "text":
        raise invalid_param(where, "must be a text block")
    return str(block.get("text", ""))


def _result_text(where: str, block: dict[str, Any]) -> str:
    """A tool result's content as text (``is_error`` results marked so the model knows)."""
    content = block.get("content", "")
    if not isinstance(content, str):
        content = "\n\n".join(_text_block(f"{where}.content[{k}]", part)
                              for k, part in enumerate(content or []))  # fmt: skip
    return f"[tool error] {content}" if block.get("is_error") else content


def _chat_tool(index: int, tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") not in (None, "custom"):
        raise invalid_param(
            f"tools[{index}].type", f"{tool.get('type')!r} (a server tool) is not supported: "
            "give client tools with name, description and input_schema",
        )  # fmt: skip
    if "name" not in tool or "input_schema" not in tool:
        raise invalid_param(f"tools[{index}]", "needs a name and an input_schema")
    function = {"name": tool["name"], "parameters": tool["input_schema"]}
    if "description" in tool:
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any]) -> tuple[str | dict[str, Any], bool | None]:
    """The chat ``tool_choice`` and ``parallel_tool_calls`` of Anthropic's ``tool_choice``."""
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "tool":
        if not choice.get("name"):
            raise invalid_param("tool_choice.name", "is required when type is 'tool'")
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    mapped = {"auto": "auto", "any": "required", "none": "none"}
    if kind not in mapped:
        raise invalid_param("tool_choice.type", "use 'auto', 'any', 'tool' or 'none'")
    return mapped[kind], parallel


def _response_format(config: dict[str, Any]) -> dict[str, Any] | None:
    """``output_config.format`` (a JSON Schema the text must fit) as a ``response_format``."""
    for name, value in config.items():
        if name != "format" and (name != "effort" or value is not None):
            raise invalid_param(f"output_config.{name}", "is not supported: give only format")
    form = config.get("format")
    if form is None:
        return None
    if not isinstance(form, dict) or form.get("type") != "json_schema" or "schema" not in form:
        raise invalid_param(
            "output_config.format", "must be {'type': 'json_schema', 'schema': ...}"
        )
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": form["schema"]}}
