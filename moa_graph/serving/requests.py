"""Chat completion requests: what is accepted, and how it becomes messages and MoA settings."""

import dataclasses
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field

from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.serving.catalog import ServedModel
from moa_graph.serving.errors import APIError

_UNSUPPORTED = {
    "tools": "tools are not supported: MoA answers with text",
    "tool_choice": "tool_choice is not supported",
    "functions": "functions are not supported",
    "function_call": "function_call is not supported",
    "logprobs": "logprobs are not supported: the answer comes from several models",
    "top_logprobs": "top_logprobs are not supported",
    "audio": "audio output is not supported",
}
_ROLES = {"system", "developer", "user", "assistant"}


class ChatRequest(BaseModel):
    """The body of ``POST /v1/chat/completions`` (other OpenAI keys are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    n: int | None = None
    response_format: dict[str, Any] | None = None
    moa: dict[str, Any] | None = None


def prepare(body: ChatRequest, served: ServedModel) -> tuple[list[BaseMessage], MoAContext]:
    """Validate the request and return its messages and settings; call nothing."""
    extra = body.model_extra or {}
    for name, reason in _UNSUPPORTED.items():
        if extra.get(name) not in (None, False, [], {}):
            raise APIError(400, reason, "invalid_request_error", param=name)
    if "audio" in (extra.get("modalities") or []):
        raise APIError(
            400, "audio output is not supported", "invalid_request_error", param="modalities"
        )
    if body.n is not None and body.n != 1:
        raise APIError(
            400,
            "n must be 1: MoA writes one answer per request",
            "invalid_request_error",
            param="n",
        )
    if body.response_format and body.response_format.get("type") != "text":
        raise APIError(
            400,
            "response_format other than text is not supported",
            "invalid_request_error",
            param="response_format",
        )
    for i, message in enumerate(body.messages):
        _check_message(i, message)
    try:
        messages = convert_to_messages([_plain(m) for m in body.messages])
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise APIError(400, f"messages: {exc}", "invalid_request_error", param="messages") from exc
    try:
        context = served.context(dict(body.moa or {}))
        max_tokens = body.max_completion_tokens or body.max_tokens
        aggregator = context.aggregator_spec()
        aggregator = dataclasses.replace(
            aggregator,
            temperature=aggregator.temperature if body.temperature is None else body.temperature,
            max_tokens=max_tokens or aggregator.max_tokens,
        )
        context = dataclasses.replace(
            context, aggregator=aggregator, seed=context.seed if body.seed is None else body.seed
        )
    except MoAConfigError as exc:
        raise APIError(400, str(exc), "invalid_request_error", param="moa") from exc
    except TypeError as exc:  # an unknown key in the moa object
        raise APIError(400, f"moa: {exc}", "invalid_request_error", param="moa") from exc
    return messages, context


def _check_message(i: int, message: dict[str, Any]) -> None:
    role = message.get("role")
    if role not in _ROLES:
        raise APIError(
            400,
            f"messages[{i}].role {role!r} is not supported: use one of {sorted(_ROLES)}",
            "invalid_request_error",
            param=f"messages[{i}].role",
        )
    if message.get("tool_calls"):
        raise APIError(
            400,
            "tool calls are not supported",
            "invalid_request_error",
            param=f"messages[{i}].tool_calls",
        )
    content = message.get("content")
    parts = content if isinstance(content, list) else []
    if not isinstance(content, str | list) or any(p.get("type") != "text" for p in parts):
        raise APIError(
            400,
            f"messages[{i}].content must be text or text parts",
            "invalid_request_error",
            param=f"messages[{i}].content",
        )


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """Join a message's text parts into one text, as some OpenAI-compatible servers need."""
    content = message.get("content")
    if isinstance(content, list):
        return {**message, "content": "".join(part.get("text", "") for part in content)}
    return message
