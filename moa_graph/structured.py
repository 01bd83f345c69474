"""Answers in a given form: a call of the caller's tools, or an object that fits a JSON Schema.

A schema becomes one tool whose parameters are the schema, forced by name, so every aggregator
mode makes the object its own way (the aggregator fills it in ``synthesize``; in ``vote`` and
``select`` every proposer fills it and the answer is one of theirs) and every provider that can
call a tool can answer (llama.cpp constrains a forced call's arguments with the schema's
grammar). The answer's call is then validated against the schema (JSON Schema 2020-12, with
`jsonschema`). `moa_graph.ChatMoA.with_structured_output`, ``moa-graph serve``'s
``response_format``, ``moa-graph batch --schema`` and the ``tool-calls`` evaluation suite use it.
"""

import dataclasses
import json
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
from langchain_core.messages import BaseMessage

from moa_graph.context import PROPOSAL_MODES, MoAContext

ANSWER_TOOL = "answer"
"""The name of a schema's tool when the caller gives none."""


class AnswerDoesNotFit(ValueError):
    """The answer made no call of the schema's tool, or its object does not fit the schema."""


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


def answering_with_calls(
    context: MoAContext, tools: list[dict[str, Any]], tool_choice: str | dict[str, Any] | None
) -> MoAContext:
    """Return `context` answering with calls of `tools`.

    The aggregator gets them, and so do the proposers where the answer is a proposal
    (``vote`` and ``select``, `moa_graph.context.PROPOSAL_MODES`).

    Raises:
        MoAConfigError: `tools` or `tool_choice` malformed (`MoAContext` validation).
    """
    return dataclasses.replace(
        context,
        tools=tools,
        tool_choice=tool_choice,
        proposer_tools=context.proposer_tools or context.aggregator_mode in PROPOSAL_MODES,
    )


def answer_object(answer: BaseMessage, tool: str, schema: Mapping[str, Any]) -> Any:
    """Return the object the answer's call of `tool` holds, validated against `schema`.

    Args:
        answer: The run's answer message (its first call of `tool` is read).
        tool: The schema tool's name.
        schema: The JSON Schema to validate against.

    Raises:
        AnswerDoesNotFit: No call of `tool`, or the object does not fit `schema` (the message
            says where: ``at $.a: 'x' is not of type 'integer'``).
    """
    calls = [c for c in getattr(answer, "tool_calls", []) if c["name"] == tool]
    if not calls:
        said = answer.text.strip()[:200]
        raise AnswerDoesNotFit(
            f"the answer made no call of {tool!r}" + (f"; it said: {said!r}" if said else "")
        )
    check_fits(calls[0]["args"], schema)
    return calls[0]["args"]


def check_fits(value: Any, schema: Mapping[str, Any]) -> None:
    """Raise `AnswerDoesNotFit` unless `value` fits the JSON Schema `schema`."""
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(value)
    )
    if error is not None:
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.path)
        shown = json.dumps(value)[:200]
        raise AnswerDoesNotFit(f"the answer {shown} does not fit the schema: at {where}: "
                               f"{error.message}")  # fmt: skip


_ONE_SCHEMA = (
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
    "unevaluatedProperties", "unevaluatedItems", "additionalItems",
)  # fmt: skip
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def subschemas(
    schema: Mapping[str, Any], where: str = "", depth: int = 1
) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    """Yield every schema object inside `schema` (itself first) with its path and depth.

    The path is JSON-Pointer-like (``.properties.a.items``); the depth counts schema levels
    (`schema` is 1). Values that are data, not schemas (``enum``, ``const``, ``default``,
    ``examples``), are not walked; boolean schemas have nothing inside.
    """
    yield where, depth, schema
    for keyword, value in schema.items():
        inner: list[tuple[str, Any]] = []
        if keyword in _ONE_SCHEMA and isinstance(value, Mapping):
            inner = [("", value)]
        elif keyword in (*_ONE_SCHEMA, *_SCHEMA_LISTS) and isinstance(value, list):
            # draft-4 tuple "items" is a list too
            inner = [(f".{i}", v) for i, v in enumerate(value)]
        elif keyword in _SCHEMA_MAPS and isinstance(value, Mapping):
            inner = [(f".{name}", v) for name, v in value.items()]
        for suffix, sub in inner:
            if isinstance(sub, Mapping):
                yield from subschemas(sub, f"{where}.{keyword}{suffix}", depth + 1)
