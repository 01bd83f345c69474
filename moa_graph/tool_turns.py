"""Earlier tool calls and results, written as text for models that are given no tools.

Proposers answer in text and are given no tools (the design of the fusion gateways: the panel
advises, the aggregator acts). They still see the whole conversation, including the tool calls
an earlier answer made and their results; some providers (Bedrock Converse) refuse tool blocks
in a request that defines no tools, so those turns are rendered as plain messages.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage


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
