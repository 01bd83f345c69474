"""`ChatMoA` over HTTP: spec-built models talk to a scripted OpenAI-compatible server.

The usage on the reply is checked against the tokens the server counted, call by call.
"""

from collections.abc import Callable

import pytest
from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from moa_graph import AggregatorError, ChatMoA, MoAContext, StructuredOutputError
from moa_graph.agents import MoAMiddleware, moa_tool
from tests.scripted_openai_server import (
    Fault,
    Script,
    ScriptedOpenAIServer,
    ToolCall,
    tool_loop_script,
)

pytestmark = pytest.mark.integration


def chat_script(body: dict) -> "str | Fault":
    """Proposers answer with their name, the aggregator with a fixed answer; "down" fails."""
    if body["model"] == "down":
        return Fault(503)
    return "The final answer." if body["model"] == "agg" else f"proposal from {body['model']}"


@pytest.fixture
def server(openai_upstream: Callable[[Script], ScriptedOpenAIServer]) -> ScriptedOpenAIServer:
    return openai_upstream(chat_script)


def moa(*proposers: str) -> ChatMoA:
    context = MoAContext(proposers=list(proposers), aggregator="openai:agg", retries=0)
    return ChatMoA(context=context)


def test_the_usage_is_what_the_server_counted(server: ScriptedOpenAIServer) -> None:
    reply = moa("openai:a", "openai:b").invoke("Name a colour.")
    assert reply.content == "The final answer."
    usage = reply.usage_metadata
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"]) == (
        server.usage["input_tokens"], server.usage["output_tokens"],
    )  # fmt: skip
    assert len(server.requests) == 3
    aggregator_prompt = server.requests[-1]["messages"]
    assert "proposal from a" in str(aggregator_prompt) and "proposal from b" in str(
        aggregator_prompt
    )


async def test_streams_the_aggregators_tokens_and_says_when_the_panel_shrank(server) -> None:
    chunks = [c async for c in moa("openai:a", "openai:down").astream("Name a colour.")]
    assert "".join(c.text for c in chunks) == "The final answer."
    meta = chunks[-1].response_metadata
    assert (meta["proposals_answered"], meta["proposals_asked"], meta["degraded"]) == (1, 2, True)
    assert server.requests[-1]["stream"] is True


@tool
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@pytest.fixture
def tool_server(openai_upstream: Callable[[Script], ScriptedOpenAIServer]) -> ScriptedOpenAIServer:
    return openai_upstream(tool_loop_script)


def test_bound_tools_reach_the_aggregator_only(tool_server: ScriptedOpenAIServer) -> None:
    reply = moa("openai:p", "openai:q").bind_tools([add], tool_choice="auto").invoke("3 + 4?")
    assert reply.tool_calls == [
        {"name": "add", "args": {"a": 3, "b": 4}, "id": "call_scripted", "type": "tool_call"}
    ]
    by_model = {body["model"]: body for body in tool_server.requests}
    assert "tools" not in by_model["p"] and "tools" not in by_model["q"]
    assert by_model["agg"]["tools"][0]["function"]["name"] == "add"
    assert by_model["agg"]["tool_choice"] == "auto"
    assert "proposal from p" in str(by_model["agg"]["messages"])  # with the references


async def test_streamed_tool_calls_reassemble(tool_server: ScriptedOpenAIServer) -> None:
    chunks = [c async for c in moa("openai:p").bind_tools([add]).astream("3 + 4?")]
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert [(c["name"], c["args"]) for c in whole.tool_calls] == [("add", {"a": 3, "b": 4})]


def test_an_agent_runs_its_tool_loop_and_the_proposers_see_the_tool_turns_as_text(
    tool_server: ScriptedOpenAIServer,
) -> None:
    agent = create_agent(moa("openai:p"), tools=[add])
    out = agent.invoke({"messages": [("user", "What is 3 + 4?")]})
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai"]
    assert out["messages"][2].content == "7" and out["messages"][-1].content == "The sum is 7."
    second_turn = [body for body in tool_server.requests if body["model"] == "p"][-1]
    assert [m["role"] for m in second_turn["messages"]] == ["user", "assistant", "user"]
    assert second_turn["messages"][1]["content"] == '[called tools: add({"a": 3, "b": 4})]'
    assert second_turn["messages"][2]["content"] == "[result of tool add]: 7"


def test_structured_output_through_the_aggregators_tool_call(tool_server) -> None:
    class Sum(BaseModel):
        a: int
        b: int

    assert moa("openai:p").with_structured_output(Sum).invoke("3 and 4") == Sum(a=3, b=4)
    assert tool_server.requests[-1]["tool_choice"]  # forced by with_structured_output


def test_the_middleware_makes_any_agent_a_moa_agent(tool_server: ScriptedOpenAIServer) -> None:
    agent_model = ChatOpenAI(model="agg", max_retries=0)
    panel = MoAContext(proposers=["openai:p", "openai:q"], retries=0)
    agent = create_agent(agent_model, tools=[add], middleware=[MoAMiddleware(panel)])
    out = agent.invoke({"messages": [("user", "What is 3 + 4?")]})
    assert out["messages"][-1].content == "The sum is 7."
    models = [body["model"] for body in tool_server.requests]
    assert models.count("p") == 1 and models.count("q") == 1  # consulted once per turn
    first_agent_call = next(b for b in tool_server.requests if b["model"] == "agg")
    system = first_agent_call["messages"][0]
    assert system["role"] == "system" and "1. proposal from p" in system["content"]
    assert first_agent_call["tools"][0]["function"]["name"] == "add"


async def test_moa_as_a_tool_returns_the_answer_and_keeps_the_records(tool_server) -> None:
    consult = moa_tool(moa("openai:p", "openai:q"))
    assert set(consult.args) == {"question", "context"}
    call = {"name": consult.name, "args": {"question": "Is 7 prime?"}, "id": "1",
            "type": "tool_call"}  # fmt: skip
    message = await consult.ainvoke(call)
    assert message.content == "The final answer."
    assert [p["model"] for p in message.artifact["proposals"]] == ["openai:p", "openai:q"]
    assert message.artifact["usage"]["total_tokens"] > 0


def ensemble_script(body: dict) -> "str | ToolCall":
    """Proposers given tools call add; two of three agree. The aggregator answers in text."""
    if body["model"] == "agg":
        return "The final answer."
    if not body.get("tools"):
        return f"proposal from {body['model']}"
    return ToolCall("add", {"a": 5, "b": 6} if body["model"] == "r" else {"b": 4, "a": 3})


@pytest.fixture
def ensemble_server(
    openai_upstream: Callable[[Script], ScriptedOpenAIServer],
) -> ScriptedOpenAIServer:
    return openai_upstream(ensemble_script)


def test_vote_over_proposed_tool_calls(ensemble_server: ScriptedOpenAIServer) -> None:
    context = MoAContext(
        proposers=["openai:p", "openai:q", "openai:r"], aggregator="openai:agg", retries=0,
        aggregator_mode="vote", proposer_tools=True,
    )  # fmt: skip
    reply = ChatMoA(context=context).bind_tools([add]).invoke("3 + 4?")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("add", {"a": 3, "b": 4})]
    assert reply.response_metadata["aggregation"]["chosen"] == 0
    assert all(body["model"] != "agg" for body in ensemble_server.requests)  # no aggregator call
    assert all(body["tools"] for body in ensemble_server.requests)  # every proposer had them


def test_the_aggregator_reads_the_proposed_calls(ensemble_server: ScriptedOpenAIServer) -> None:
    context = MoAContext(
        proposers=["openai:p", "openai:r"], aggregator="openai:agg", retries=0,
        proposer_tools=True,
    )  # fmt: skip
    reply = ChatMoA(context=context).bind_tools([add]).invoke("3 + 4?")
    assert reply.content == "The final answer."
    system = next(b for b in ensemble_server.requests if b["model"] == "agg")["messages"][0]
    assert '1. [called tools: add({"a": 3, "b": 4})]' in system["content"]
    assert '2. [called tools: add({"a": 5, "b": 6})]' in system["content"]


def test_create_agent_response_format_uses_the_tool_strategy(tool_server) -> None:
    class Sum(BaseModel):
        a: int
        b: int

    assert moa("openai:p").profile["tool_calling"] is True
    agent = create_agent(moa("openai:p"), tools=[], response_format=Sum)
    out = agent.invoke({"messages": [("user", "3 and 4")]})
    assert out["structured_response"] == Sum(a=3, b=4)


def test_an_answer_that_does_not_fit_is_an_error_that_keeps_the_records(tool_server) -> None:
    class Product(BaseModel):
        c: int  # the scripted aggregator fills a and b

    with pytest.raises(StructuredOutputError, match="does not fit the schema") as caught:
        moa("openai:p", "openai:q").with_structured_output(Product).invoke("3 and 4")
    assert [p["model"] for p in caught.value.records["proposals"]] == ["openai:p", "openai:q"]
    assert caught.value.raw.tool_calls[0]["args"] == {"a": 3, "b": 4}
    raw = moa("openai:p").with_structured_output(Product, include_raw=True).invoke("3 and 4")
    assert raw["parsed"] is None and raw["parsing_error"] is not None  # LangChain's contract


class Sum(BaseModel):
    a: int
    b: int


def structured_script(body: dict) -> "str | ToolCall":
    """Proposers given the schema fill it (r with 5 and 6, t answers in text anyway); the
    aggregator judges "Response 2" without tools and fills 0 and 0 with them."""
    tools = body.get("tools")
    if body["model"] == "agg":
        return ToolCall(tools[0]["function"]["name"], {"a": 0, "b": 0}) if tools else "Response 2"
    if not tools or body["model"] == "t":
        return f"proposal from {body['model']}"
    return ToolCall(tools[0]["function"]["name"], {"a": 5, "b": 6} if body["model"] == "r" else
                    {"b": 4, "a": 3})  # fmt: skip


def structured(mode: str, *proposers: str) -> ChatMoA:
    context = MoAContext(proposers=[f"openai:{p}" for p in proposers], aggregator="openai:agg",
                         retries=0, aggregator_mode=mode)  # fmt: skip
    return ChatMoA(context=context)


@pytest.fixture
def structured_server(
    openai_upstream: Callable[[Script], ScriptedOpenAIServer],
) -> ScriptedOpenAIServer:
    return openai_upstream(structured_script)


def test_vote_votes_over_the_parsed_objects(structured_server: ScriptedOpenAIServer) -> None:
    answer = structured("vote", "r", "p", "q").with_structured_output(Sum).invoke("3 and 4")
    assert answer == Sum(a=3, b=4)  # two of three, their arguments compared with sorted keys
    assert all(b["model"] != "agg" for b in structured_server.requests)  # no aggregator call
    assert all(b["tool_choice"]["function"]["name"] == "Sum" for b in structured_server.requests)


def test_vote_counts_only_proposals_that_filled_the_schema(structured_server) -> None:
    raw = structured("vote", "t", "t", "r").with_structured_output(Sum, include_raw=True)
    out = raw.invoke("3 and 4")
    assert out["parsed"] == Sum(a=5, b=6)  # the two text answers would have won a text vote
    assert out["raw"].response_metadata["aggregation"]["chosen"] == 2


def test_select_keeps_the_chosen_object_and_falls_back_when_it_made_none(
    structured_server: ScriptedOpenAIServer,
) -> None:
    assert structured("select", "p", "r").with_structured_output(Sum).invoke("3 and 4") == Sum(
        a=5, b=6
    )
    out = structured("select", "p", "t").with_structured_output(Sum, include_raw=True).invoke("x")
    assert out["parsed"] == Sum(a=0, b=0)  # the aggregator filled it
    aggregation = out["raw"].response_metadata["aggregation"]
    assert aggregation["mode"] == "synthesize"
    assert aggregation["fallback"] == "select: the chosen proposal made no tool call"


def test_a_call_cut_off_mid_json_is_an_error_that_says_so(
    openai_upstream: Callable[[Script], ScriptedOpenAIServer],
) -> None:
    openai_upstream(lambda body: ToolCall("Sum", '{"a": 3, "b"') if body.get("tools") else "p")
    with pytest.raises(AggregatorError, match="arguments are not valid JSON"):
        moa("openai:p").with_structured_output(Sum).invoke("3 and 4")
