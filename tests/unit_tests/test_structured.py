"""Answers in a given form: schema tools, validation, and the walk over a schema's parts."""

import pytest
from langchain_core.messages import AIMessage

from moa_graph.structured import AnswerDoesNotFit, answer_object, schema_tool, subschemas
from moa_graph.trust import RequestPolicy, RequestRefused

SUM = {
    "type": "object",
    "properties": {
        "a": {"type": "integer"},
        "items": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["a"],
}


def call(args: dict) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": "Sum", "args": args, "id": "1"}])


def test_the_answer_is_the_calls_object_or_a_clear_error() -> None:
    assert schema_tool(SUM, "Sum")["function"]["parameters"] == SUM
    assert answer_object(call({"a": 3, "items": [1]}), "Sum", SUM) == {"a": 3, "items": [1]}
    with pytest.raises(AnswerDoesNotFit, match=r"at \$\.items\[1\]: 'x' is not of type 'integer'"):
        answer_object(call({"a": 3, "items": [1, "x"]}), "Sum", SUM)
    with pytest.raises(AnswerDoesNotFit, match="no call of 'Sum'; it said: 'seven'"):
        answer_object(AIMessage("seven"), "Sum", SUM)


def test_subschemas_walk_schemas_not_data() -> None:
    schema = {**SUM, "enum": [{"type": "object"}], "$defs": {"D": {"anyOf": [{"type": "null"}]}}}
    found = {where: depth for where, depth, _ in subschemas(schema)}
    assert found == {
        "": 1, ".properties.a": 2, ".properties.items": 2, ".properties.items.items": 3,
        ".$defs.D": 2, ".$defs.D.anyOf.0": 3,
    }  # fmt: skip


def test_a_property_named_pattern_is_not_a_regex() -> None:
    named = {"type": "object", "properties": {"pattern": {"type": "string"}}}
    RequestPolicy().check_schema("s", named)
    with pytest.raises(RequestRefused) as refused:
        RequestPolicy().check_schema("s", {"patternProperties": {"^a": {}}})
    assert refused.value.param == "s.patternProperties"
