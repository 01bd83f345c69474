"""Tool calls and results written as text for models given no tools; tool settings checked."""

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from moa_graph import MoAConfigError, MoAContext
from moa_graph.tool_turns import has_tool_turns, render_tool_turns

CALL = {"name": "add", "args": {"b": 4, "a": 3}, "id": "c1", "type": "tool_call"}


def test_tool_turns_become_plain_messages() -> None:
    messages = [
        HumanMessage("What is 3 + 4?"),
        AIMessage("Let me add.", tool_calls=[CALL]),
        ToolMessage("7", tool_call_id="c1", name="add"),
    ]
    rendered = render_tool_turns(messages)
    assert [type(m) for m in rendered] == [HumanMessage, AIMessage, HumanMessage]
    assert rendered[1].content == 'Let me add.\n[called tools: add({"a": 3, "b": 4})]'
    assert rendered[2].content == "[result of tool add]: 7"
    assert not has_tool_turns(rendered) and messages[1].tool_calls  # the input is untouched


def test_a_conversation_without_tools_is_unchanged() -> None:
    messages = [HumanMessage("hi"), AIMessage("hello")]
    assert render_tool_turns(messages) == messages


@pytest.mark.parametrize(
    ("tools", "choice", "message"),
    [
        ([{"name": "add"}], None, "tools\\[0\\] must be"),
        (None, "auto", "tool_choice='auto' needs tools"),
        ([{"type": "function", "function": {"name": "add"}}], 3, "tool_choice=3"),
    ],
)
def test_tool_settings_are_checked(tools, choice, message) -> None:
    with pytest.raises(MoAConfigError, match=message):
        MoAContext(tools=tools, tool_choice=choice)
