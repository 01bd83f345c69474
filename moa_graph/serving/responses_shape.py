"""The Responses API's shape (``POST /v1/responses``), stateless: request, reply and events.

A request becomes a `moa_graph.serving.requests.ChatRequest` (``instructions`` a system
message, ``input`` items messages, ``function_call`` / ``function_call_output`` items a tool
turn, flat function ``tools`` OpenAI chat tools, ``text.format`` a ``response_format``,
``max_output_tokens`` ``max_tokens``) and goes through the same code path as Chat Completions;
its reply is a ``response`` object, or the events the openai SDK's ``.stream()`` reads.
Nothing is stored: ``store: true`` and ``previous_response_id`` are refused with a 400 that says
so. Streaming sends ``response.created``, ``response.in_progress``, then per output item
``response.output_item.added``, its ``content_part`` / ``output_text`` or
``function_call_arguments`` events and ``response.output_item.done``, and last
``response.completed`` (or ``response.failed``); heartbeats are SSE comments.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from openai.types.responses import Response
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from pydantic import BaseModel, ConfigDict

from moa_graph.serving.answers import (
    CallDelta,
    Event,
    Failed,
    Finished,
    Heartbeat,
    Reply,
    TextDelta,
)
from moa_graph.serving.errors import invalid_param
from moa_graph.serving.requests import ChatRequest

IGNORED = frozenset(
    {"metadata", "user", "safety_identifier", "prompt_cache_key", "service_tier", "truncation",
     "include", "background"}
)  # fmt: skip
"""Fields accepted and ignored (``include`` and ``background`` only when empty or false)."""


class ResponsesRequest(BaseModel):
    """The body of ``POST /v1/responses`` (the fields this server acts on)."""

    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    parallel_tool_calls: bool | None = None
    reasoning: dict[str, Any] | None = None
    stream: bool = False
    store: bool | None = None
    previous_response_id: str | None = None
    moa: dict[str, Any] | None = None
    include_analysis: bool = False


def to_chat_request(body: ResponsesRequest) -> ChatRequest:
    """Return the chat request `body` asks for.

    Raises:
        APIError: 400 for what a stateless server cannot do (``store: true``,
            ``previous_response_id``), a tool or item it does not know, or an unknown field.
    """
    if body.store:
        raise invalid_param("store", "must be false or absent: this server stores no response")
    if body.previous_response_id:
        raise invalid_param(
            "previous_response_id", "is not supported: this server is stateless; send the "
            "whole conversation in input",
        )  # fmt: skip
    extra = body.model_extra or {}
    for name, value in extra.items():
        if name not in IGNORED or (name in ("include", "background") and value):
            raise invalid_param(name, "is not a field this server acts on; remove it")
    chat: dict[str, Any] = {
        "model": body.model,
        "messages": _messages(body),
        "stream": body.stream,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_tokens": body.max_output_tokens,
        "parallel_tool_calls": body.parallel_tool_calls,
        "moa": body.moa,
        "include_analysis": body.include_analysis,
    }
    if body.tools:
        chat["tools"] = [_chat_tool(i, tool) for i, tool in enumerate(body.tools)]
    if body.tool_choice is not None:
        choice = body.tool_choice
        chat["tool_choice"] = (
            {"type": "function", "function": {"name": choice.get("name")}}
            if isinstance(choice, dict)
            else choice
        )
    if (effort := (body.reasoning or {}).get("effort")) is not None:
        chat["reasoning_effort"] = effort
    if body.text and (form := body.text.get("format")):
        chat["response_format"] = _response_format(form)
    return ChatRequest(**{k: v for k, v in chat.items() if v is not None})


def response(reply: Reply, body: ResponsesRequest, response_id: str | None = None) -> Response:
    """Return the ``response`` object of `reply` (status ``incomplete`` when cut off)."""
    output: list[dict[str, Any]] = []
    if reply.text or not reply.calls:
        output.append(_message_item(f"msg_{uuid.uuid4().hex}", reply.text, "completed"))
    output += [_call_item(f"fc_{uuid.uuid4().hex}", c.id, c.name, c.arguments, "completed")
               for c in reply.calls]  # fmt: skip
    return _response(body, response_id or f"resp_{uuid.uuid4().hex}", output, reply)


async def response_events(
    events: AsyncIterator[Event], body: ResponsesRequest
) -> AsyncIterator[str]:
    """The SSE events of a streamed response (see the module)."""
    response_id = f"resp_{uuid.uuid4().hex}"
    number = 0

    def sse(kind: str, fields: dict[str, Any]) -> str:
        nonlocal number
        number += 1
        data = {"type": kind, "sequence_number": number - 1, **fields}
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n"

    started = _response(body, response_id, [], None).model_dump(mode="json")
    yield sse("response.created", {"response": started})
    yield sse("response.in_progress", {"response": started})
    items: dict[str, dict[str, Any]] = {}  # "text" or "call:N" -> its item, in output order
    async for event in events:
        if isinstance(event, Heartbeat):
            yield ": proposers working\n\n"
        elif isinstance(event, TextDelta):
            if "text" not in items:
                items["text"] = item = _message_item(f"msg_{uuid.uuid4().hex}", "", "in_progress")
                item["content"] = []
                yield sse("response.output_item.added", {"output_index": len(items) - 1,
                                                          "item": item})  # fmt: skip
                yield sse("response.content_part.added", {
                    "item_id": item["id"], "output_index": len(items) - 1, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}})  # fmt: skip
                item["text"] = ""
            item = items["text"]
            item["text"] += event.text
            yield sse("response.output_text.delta", {
                "item_id": item["id"], "output_index": _index(items, "text"), "content_index": 0,
                "delta": event.text, "logprobs": []})  # fmt: skip
        elif isinstance(event, CallDelta):
            key = f"call:{event.index}"
            if key not in items:
                items[key] = item = _call_item(f"fc_{uuid.uuid4().hex}", event.id or "",
                                               event.name or "", "", "in_progress")  # fmt: skip
                yield sse("response.output_item.added", {"output_index": len(items) - 1,
                                                          "item": item})  # fmt: skip
            item = items[key]
            item["arguments"] += event.arguments
            yield sse("response.function_call_arguments.delta", {
                "item_id": item["id"], "output_index": _index(items, key),
                "delta": event.arguments})  # fmt: skip
        elif isinstance(event, Failed):
            failed = _response(body, response_id, [], None).model_dump(mode="json")
            error = event.error
            failed |= {"status": "failed", "error": {"code": error.code or "server_error",
                                                       "message": error.message}}  # fmt: skip
            yield sse("response.failed", {"response": failed})
            return
        elif isinstance(event, Finished):
            reply, finished = event.reply, []
            for key, item in items.items():
                index = _index(items, key)
                if key == "text":
                    ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
                    part = {"type": "output_text", "text": reply.text, "annotations": []}
                    yield sse("response.output_text.done", {**ids, "text": reply.text,
                                                             "logprobs": []})  # fmt: skip
                    yield sse("response.content_part.done", {**ids, "part": part})
                    done = _message_item(item["id"], reply.text, "completed")
                else:
                    n = int(key.split(":")[1])
                    call = reply.calls[n] if n < len(reply.calls) else None
                    arguments = call.arguments if call else item["arguments"]
                    yield sse("response.function_call_arguments.done", {
                        "item_id": item["id"], "output_index": index,
                        "arguments": arguments})  # fmt: skip
                    done = _call_item(item["id"], item["call_id"] or (call.id if call else ""),
                                      item["name"], arguments, "completed")  # fmt: skip
                finished.append(done)
                yield sse("response.output_item.done", {"output_index": index, "item": done})
            completed = response(reply, body, response_id).model_dump(mode="json")
            if finished:  # the items as streamed, with their ids
                completed["output"] = finished
            yield sse("response.completed", {"response": completed})


def _index(items: dict[str, Any], key: str) -> int:
    return list(items).index(key)


def _response(
    body: ResponsesRequest, response_id: str, output: list[dict[str, Any]], reply: Reply | None
) -> Response:
    fields: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": time.time(),
        "model": body.model,
        "output": output,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "tool_choice": body.tool_choice or "auto",
        "tools": [{**t, "strict": t.get("strict", False)} for t in body.tools or []],
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "text": body.text or {"format": {"type": "text"}},
        "status": "in_progress",
        "store": False,
    }
    if reply is not None:
        total = reply.summary["usage"]
        fields["status"] = "incomplete" if reply.finish == "length" else "completed"
        if reply.finish == "length":
            fields["incomplete_details"] = {"reason": "max_output_tokens"}
        fields["usage"] = {
            "input_tokens": total["input_tokens"],
            "input_tokens_details": _zeros(InputTokensDetails),
            "output_tokens": total["output_tokens"],
            "output_tokens_details": _zeros(OutputTokensDetails),
            "total_tokens": total["total_tokens"],
        }
    return Response.model_validate(fields)


def _zeros(details: type[BaseModel]) -> dict[str, int]:
    """Zero for every count the openai package's usage details require (their fields vary)."""
    return {name: 0 for name, f in details.model_fields.items() if f.is_required()}


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id, "type": "message", "role": "assistant", "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }  # fmt: skip


def _call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}  # fmt: skip


def _messages(body: ResponsesRequest) -> list[dict[str, Any]]:
    """The conversation as chat messages (consecutive function calls: one assistant turn)."""
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    if isinstance(body.input, str):
        return [*messages, {"role": "user", "content": body.input}]
    for i, item in enumerate(body.input):
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item.get("role"), "content": _text(i, item.get("content"))})
        elif kind == "function_call":
            function = {"name": item.get("name"), "arguments": item.get("arguments")}
            call = {"id": item.get("call_id"), "type": "function", "function": function}
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant" and last.get("tool_calls"):
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        elif kind == "reasoning":
            continue  # a model's reasoning summary from an earlier turn: not the conversation
        else:
            raise invalid_param(f"input[{i}].type", f"{kind!r} items are not supported")
    return messages


def _text(index: int, content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts = []
    for j, part in enumerate(content or []):
        if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text",
                                                                   "text"):  # fmt: skip
            raise invalid_param(f"input[{index}].content[{j}]", "must be a text part")
        parts.append({"type": "text", "text": part.get("text", "")})
    return parts


def _chat_tool(index: int, tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise invalid_param(f"tools[{index}].type", "only function tools are supported")
    function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
    return {"type": "function", "function": function}


def _response_format(form: dict[str, Any]) -> dict[str, Any]:
    kind = form.get("type")
    if kind == "json_schema":
        spec = {k: form[k] for k in ("name", "schema", "strict") if k in form}
        return {"type": "json_schema", "json_schema": spec}
    if kind in ("json_object", "text"):
        return {"type": kind}
    raise invalid_param("text.format.type", "use 'text', 'json_object' or 'json_schema'")
