"""Answers in a given form: schema tools and validation."""

import pytest
from langchain_core.messages import AIMessage

from moa_graph.errors import AnswerDoesNotFit
from moa_graph.structured import answer_object
from moa_graph.tool_turns import schema_tool

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
