"""Tools in a run, free of I/O: a schema as a tool, a call's arguments, tool turns as text.

Proposers given no tools answer in text (the design of the fusion gateways: the panel advises,
the aggregator acts). They still see the whole conversation, including the tool calls an
earlier answer made and their results; some providers (Bedrock Converse) refuse tool blocks in
a request that defines no tools, so those turns are rendered as plain messages
(`render_tool_turns`). An answer that must be an object is the arguments of one forced tool
(`schema_tool`, read back by `call_arguments`).
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable

from moa_graph.errors import AnswerDoesNotFit

ANSWER_TOOL = "answer"
"""The name of a schema's tool when the caller gives none."""


def has_tool_turns(messages: Sequence[BaseMessage]) -> bool:
    """Return True when `messages` hold a tool call or a tool result."""
    return any(
        isinstance(m, ToolMessage) or (isinstance(m, AIMessage) and m.tool_calls) for m in messages
    )


def forces_a_call(tool_choice: str | Mapping[str, Any] | None) -> bool:
    """Return True when `tool_choice` makes the model call a tool (any but auto, none, unset)."""
    return tool_choice not in (None, "auto", "none")


def render_tool_turns(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Return `messages` with tool calls and tool results written as plain text.

    An assistant message with tool calls keeps its text and gains a line
    ``[called tools: name({"arg": ...})]``; a tool result becomes a user message
    ``[result of tool name]: ...`` (the name from the result, else from the call it answers,
    else its call id). Other messages are unchanged.
    """
    if not has_tool_turns(messages):
        return list(messages)
    rendered: list[BaseMessage] = []
    names: dict[str, str] = {}
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            names.update({c["id"]: c["name"] for c in message.tool_calls if c["id"]})
            rendered.append(AIMessage(describe_calls(message.text, message.tool_calls)))
        elif isinstance(message, ToolMessage):
            name = message.name or names.get(message.tool_call_id, message.tool_call_id)
            rendered.append(HumanMessage(f"[result of tool {name}]: {message.text}"))
        else:
            rendered.append(message)
    return rendered


def describe_calls(text: str, calls: Sequence[Mapping[str, Any]]) -> str:
    """Return `text` and a line ``[called tools: name({"arg": ...})]`` for `calls`.

    The arguments are written with sorted keys, so equal calls read the same.
    """
    named = "; ".join(f"{c['name']}({json.dumps(c['args'], sort_keys=True)})" for c in calls)
    return (f"{text}\n" if text else "") + f"[called tools: {named}]"


def schema_tool(
    schema: Mapping[str, Any], name: str = ANSWER_TOOL, description: str | None = None
) -> dict[str, Any]:
    """Return `schema` as one OpenAI function tool, whose arguments are the answer.

    Args:
        schema: A JSON Schema of an object (``{"type": "object", ...}``).
        name: The tool's name (OpenAI's ``json_schema.name``; ``[A-Za-z0-9_-]``, 64 at most).
        description: What the answer is; default: the schema's own ``description``.
    """
    text = description or schema.get("description") or "Give the answer as this object."
    return {
        "type": "function",
        "function": {"name": name, "description": text, "parameters": dict(schema)},
    }


def call_arguments(calls: Sequence[Mapping[str, Any]], tool: str, text: str) -> Any:
    """Return the arguments of the first of `calls` (``name``, ``args``) named `tool`.

    Raises:
        AnswerDoesNotFit: No such call; the message quotes the answer's `text`, if any.
    """
    for call in calls:
        if call["name"] == tool:
            return call["args"]
    said = text.strip()[:200]
    raise AnswerDoesNotFit(
        f"the answer made no call of {tool!r}" + (f"; it said: {said!r}" if said else "")
    )


def bind_run_tools(
    model: BaseChatModel, tools: Sequence[dict[str, Any]], tool_choice: Any
) -> Runnable[Any, Any]:
    """Return `model` with a run's tools and tool choice bound (no choice: the provider's)."""
    choice: dict[str, Any] = {} if tool_choice is None else {"tool_choice": tool_choice}
    return model.bind_tools(list(tools), **choice)
