"""How an Anthropic Messages request becomes the chat request the one pipeline runs."""

import pytest

from moa_graph.serving.anthropic_shape import MessagesRequest, to_chat_request
from moa_graph.serving.errors import APIError

ADD = {"name": "add", "description": "Add a and b.", "input_schema": {"type": "object"}}


def chat(**body) -> dict:
    request = MessagesRequest(**{"model": "moa", "max_tokens": 64, **body})
    return to_chat_request(request).model_dump(exclude_none=True)


def test_a_tool_turn_becomes_tool_calls_and_tool_messages() -> None:
    done = chat(
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
        messages=[
            {"role": "user", "content": "Add 2 and 3."},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "...", "signature": "s"},
                {"type": "text", "text": "Adding."},
                {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 2, "b": 3}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                    {"type": "text", "text": "5"}]},
                {"type": "text", "text": "And now say it."}]},
        ],
        tools=[ADD], tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
    )  # fmt: skip
    assert done["messages"] == [
        {"role": "system", "content": "Be brief.\n\nUse tools."},
        {"role": "user", "content": "Add 2 and 3."},
        {"role": "assistant", "content": "Adding.", "tool_calls": [{"id": "toolu_1",
         "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "5"},
        {"role": "user", "content": [{"type": "text", "text": "And now say it."}]},
    ]  # fmt: skip
    function = {"name": "add", "parameters": {"type": "object"}, "description": "Add a and b."}
    assert done["tools"] == [{"type": "function", "function": function}]
    assert (done["tool_choice"], done["parallel_tool_calls"]) == ("required", False)
    assert (done["max_tokens"], done["stop"]) == (64, ["END"])


def test_choices_and_typed_answers_map_to_their_chat_forms() -> None:
    named = chat(messages=[{"role": "user", "content": "x"}], tools=[ADD],
                 tool_choice={"type": "tool", "name": "add"})  # fmt: skip
    assert named["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    typed = chat(
        messages=[{"role": "user", "content": "x"}],
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
    )
    assert typed["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "output", "schema": {"type": "object"}}}  # fmt: skip
    failed = {"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True}
    marked = chat(messages=[{"role": "user", "content": [failed]}])
    assert marked["messages"] == [{"role": "tool", "tool_call_id": "t",
                                   "content": "[tool error] boom"}]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"top_k": 5}, "top_k"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
        ({"messages": [{"role": "user", "content": [{"type": "image"}]}]},
         "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t"}]}]},
         "messages[0].content[0].type"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"output_config": {"effort": "high"}}, "output_config.effort"),
        ({"output_config": {"effort": None, "task_budget": 5}}, "output_config.task_budget"),
        ({"mcp_servers": [{"url": "http://x"}]}, "mcp_servers"),
    ],
)  # fmt: skip
def test_what_the_server_does_not_take_is_a_400_naming_it(body: dict, param: str) -> None:
    with pytest.raises(APIError) as refused:
        chat(**{"messages": [{"role": "user", "content": "x"}], **body})
    assert (refused.value.status, refused.value.param) == (400, param)


def test_ignored_service_hints_are_accepted() -> None:
    done = chat(messages=[{"role": "user", "content": "x"}], metadata={"user_id": "u"},
                service_tier="auto", cache_control={"type": "ephemeral"})  # fmt: skip
    assert done["messages"] == [{"role": "user", "content": "x"}]
