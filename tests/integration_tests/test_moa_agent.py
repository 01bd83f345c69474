"""graphs/moa_agent.py: the MoA graph as the model node of a tool loop, over HTTP.

Spec-built models talk to a scripted OpenAI-compatible server whose aggregator calls the tool
it is given, then answers from the result.
"""

from collections.abc import Callable

import pytest

from graphs.moa_agent import build_moa_agent
from moa_graph import MoAContext
from tests.scripted_openai_server import Script, ScriptedOpenAIServer, tool_loop_script

pytestmark = pytest.mark.integration


@pytest.fixture
def server(openai_upstream: Callable[[Script], ScriptedOpenAIServer]) -> ScriptedOpenAIServer:
    return openai_upstream(tool_loop_script)


async def test_the_loop_calls_the_tool_and_answers_from_its_result(server) -> None:
    agent = build_moa_agent().compile()
    context = MoAContext(proposers=["openai:p", "openai:q"], aggregator="openai:agg", retries=0)
    out = await agent.ainvoke({"messages": [("user", "What is 3 + 4?")]}, context=context)
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai"]
    assert out["messages"][1].tool_calls[0]["args"] == {"op": "+", "a": 3, "b": 4}
    assert out["messages"][2].content == "7.0" and out["messages"][-1].content == "The sum is 7."
    aggregator_calls = [body for body in server.requests if body["model"] == "agg"]
    forced = {"type": "function", "function": {"name": "calculate"}}
    assert [call.get("tool_choice") for call in aggregator_calls] == [forced, None]
    assert all("tools" not in body for body in server.requests if body["model"] != "agg")


def test_it_draws_as_a_loop() -> None:
    drawn = build_moa_agent().compile().get_graph()
    edges = {(e.source, e.target) for e in drawn.edges}
    assert {("__start__", "moa"), ("moa", "tools"), ("tools", "moa"), ("moa", "__end__")} <= edges
