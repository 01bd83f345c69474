"""Answers in a given form: a call of the caller's tools, or an object that fits a JSON Schema.

A schema becomes one tool whose parameters are the schema, forced by name, so every aggregator
mode makes the object its own way (the aggregator fills it in ``synthesize``; in ``vote`` and
``select`` every proposer fills it and the answer is one of theirs) and every provider that can
call a tool can answer (llama.cpp constrains a forced call's arguments with the schema's
grammar). The answer's call is then validated against the schema (JSON Schema 2020-12, with
`jsonschema`, retrieving nothing: `moa_graph.json_schema`).
`moa_graph.ChatMoA.with_structured_output`, ``moa-graph serve``'s ``response_format``,
``moa-graph batch --schema`` and the ``tool-calls`` evaluation suite use it.
"""

import importlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ValidationError

from moa_graph.context import MoAContext
from moa_graph.errors import AnswerDoesNotFit, MoAConfigError
from moa_graph.json_schema import first_error, validator
from moa_graph.tool_turns import ANSWER_TOOL, call_arguments, schema_tool


@dataclass(frozen=True)
class AnswerSchema:
    """The form every answer must take: a JSON Schema, or a Pydantic model and its schema.

    Attributes:
        name: The schema tool's name (the model's class name, the schema's ``title``, else
            ``answer``).
        json_schema: The JSON Schema of the object.
        model: The Pydantic model, when the schema came from one: answers are validated by it
            (its coercions apply) and stored as its JSON form.
    """

    name: str
    json_schema: dict[str, Any]
    model: type[BaseModel] | None = None

    @classmethod
    def of(cls, schema: "Mapping[str, Any] | type[BaseModel] | AnswerSchema") -> "AnswerSchema":
        """Return the answer schema of a JSON Schema (an object's) or a Pydantic model.

        Raises:
            MoAConfigError: Not a valid JSON Schema of an object.
        """
        if isinstance(schema, AnswerSchema):
            return schema
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return cls(schema.__name__, schema.model_json_schema(), schema)
        if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
            raise MoAConfigError("schema must be a JSON Schema of an object, or a Pydantic model")
        try:
            validator(schema)
        except jsonschema.SchemaError as exc:
            raise MoAConfigError(f"schema is not a valid JSON Schema: {exc.message}") from None
        name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or ANSWER_TOOL))[:64]
        return cls(name, dict(schema))

    def tool(self) -> dict[str, Any]:
        """The schema as the one forced tool (`schema_tool`)."""
        return schema_tool(self.json_schema, self.name)

    def context_for(self, context: MoAContext) -> MoAContext:
        """Return `context` answering with this schema's object (`MoAContext.with_tools`)."""
        return context.with_tools(answer_tool=self.tool())

    def parse(self, value: Any) -> Any:
        """Return `value` validated: the model's JSON form, or `value` itself.

        Raises:
            AnswerDoesNotFit: It does not fit; the message says where.
        """
        if self.model is None:
            check_fits(value, self.json_schema)
            return value
        try:
            return self.model.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "$" + "".join(f".{p}" for p in first["loc"])
            raise AnswerDoesNotFit(
                f"the answer {json.dumps(value)[:200]} does not fit {self.name}: at {where}: "
                f"{first['msg']}"
            ) from None


def load_answer_schema(reference: str) -> AnswerSchema:
    """Load the schema a reference names: a JSON Schema file, or ``module:Model``.

    ``module:Model`` imports the module (the working directory first on the path, as
    ``python -m`` would) and takes its Pydantic model ``Model``.

    Raises:
        MoAConfigError: The file cannot be read as JSON, the module or the model is missing,
            or the schema is not a valid JSON Schema of an object.
    """
    module, _, attribute = reference.partition(":")
    if attribute and not reference.endswith(".json"):
        sys.path.insert(0, str(Path.cwd()))
        try:
            model = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise MoAConfigError(f"schema {reference!r}: cannot import it: {exc}") from None
        finally:
            sys.path.pop(0)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise MoAConfigError(f"schema {reference!r} is not a Pydantic model")
        return AnswerSchema.of(model)
    try:
        schema = json.loads(Path(reference).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MoAConfigError(f"schema {reference}: cannot read a JSON Schema: {exc}") from None
    return AnswerSchema.of(schema)


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
    value = call_arguments(getattr(answer, "tool_calls", []), tool, answer.text)
    check_fits(value, schema)
    return value


def check_fits(value: Any, schema: Mapping[str, Any]) -> None:
    """Raise `AnswerDoesNotFit` unless `value` fits the JSON Schema `schema`.

    Validated without retrieving anything, within 1 s of CPU (`moa_graph.json_schema`).

    Raises:
        AnswerDoesNotFit: It does not fit; the message says where.
        moa_graph.json_schema.SchemaTooCostly: The validation ran past its deadline.
    """
    error = first_error(value, schema)
    if error is not None:
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.path)
        shown = json.dumps(value)[:200]
        raise AnswerDoesNotFit(f"the answer {shown} does not fit the schema: at {where}: "
                               f"{error.message}")  # fmt: skip
