"""`langgraph dev` serves the graphs of langgraph.json offline, driven by langgraph-sdk.

The server (`tests.dev_server`) starts the embedded model itself, as it does for a Studio user.
"""

import json
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import openai
import pytest
from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI
from langgraph_sdk import get_client
from pydantic import BaseModel

from moa_graph.agents import ForceToolOnFirstCall
from moa_graph.local_server import local_base_url
from studio.create_assistants import save_assistants
from tests.dev_server import ROOT, DevServer, run_dev_server, session_processes

pytestmark = pytest.mark.integration

MOA_NODES = {"layer", "proposer", "collect_references", "aggregator"}
API_KEY = "studio-test-key"


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    yield from run_dev_server(
        tmp_path_factory.mktemp("langgraph-dev"),
        MOA_API_KEY=API_KEY,
        MOA_SERVE_ASSISTANTS=str(ROOT / "studio" / "assistants.json"),
    )


@pytest.fixture
def server(dev_server: DevServer) -> str:
    return dev_server.url


async def assistant(url: str, graph_id: str) -> dict[str, Any]:
    found = await get_client(url=url).assistants.search(graph_id=graph_id)
    [system] = [a for a in found if a["metadata"].get("created_by") == "system"]
    return dict(system)


async def test_graphs_draw_with_moa_nodes_and_conditional_edges(server: str) -> None:
    client = get_client(url=server)
    graphs = {a["graph_id"] for a in await client.assistants.search()}
    assert {"moa", "router_agent", "moa_agent", "moa_answer"} <= graphs

    drawn = await client.assistants.get_graph((await assistant(server, "moa"))["assistant_id"])
    assert {node["id"] for node in drawn["nodes"]} >= MOA_NODES
    conditional = {
        (e["source"], e["target"], e.get("data")) for e in drawn["edges"] if e.get("conditional")
    }
    assert conditional == {
        ("layer", "proposer", None),
        ("collect_references", "layer", "next round"),
        ("collect_references", "aggregator", "aggregate"),
        ("collect_references", "cascade_answer", "cascade answers"),  # a cascade's gate
    }
    router_id = (await assistant(server, "router_agent"))["assistant_id"]
    router = await client.assistants.get_graph(router_id, xray=True)
    assert {f"moa:{n}" for n in MOA_NODES} | {"triage", "single_model"} <= {
        node["id"] for node in router["nodes"]
    }


async def test_schemas_carry_the_context_fields_with_descriptions(server: str) -> None:
    client = get_client(url=server)
    moa = await client.assistants.get_schemas((await assistant(server, "moa"))["assistant_id"])
    fields = moa["context_schema"]["properties"]
    assert set(fields) >= {"proposers", "aggregator", "rounds", "max_tokens", "min_proposals"}
    assert all(field.get("description") for field in fields.values())
    assert "messages" in moa["input_schema"]["properties"]
    assert "proposals" in moa["output_schema"]["properties"]
    router_id = (await assistant(server, "router_agent"))["assistant_id"]
    router = await client.assistants.get_schemas(router_id)
    assert {"single_model", "hard_min_words", "rounds"} <= set(
        router["context_schema"]["properties"]
    )


async def test_router_agent_answers_easy_questions_with_the_single_model(server: str) -> None:
    client = get_client(url=server)
    router_id = (await assistant(server, "router_agent"))["assistant_id"]
    thread = await client.threads.create()

    # The first test to call a model (tests run in file order): the single model and the
    # embedded server are created in this run, under langgraph dev's blocking-call guard.
    tokens, values = await stream_turn(
        server, thread["thread_id"], router_id, "Who wrote Hamlet?", context={"max_tokens": 20}
    )

    assert values["route"] == "easy"
    assert tokens and {node for _, node, _ in tokens} == {"single_model"}
    assert values["messages"][-1]["content"].strip()


async def stream_turn(
    url: str, thread_id: str, assistant_id: str, text: str, **kwargs: Any
) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """Run one turn; return (event, node, token) per streamed token, and the final values."""
    tokens, values = [], {}
    async for part in get_client(url=url).runs.stream(
        thread_id, assistant_id,
        input={"messages": [{"role": "user", "content": text}]},
        stream_mode=["messages-tuple", "values"], **kwargs,
    ):  # fmt: skip
        if part.event.startswith("messages"):
            chunk, metadata = part.data
            tokens.append((part.event, metadata["langgraph_node"], chunk["content"]))
        elif part.event.startswith("values"):
            values = part.data
        assert part.event != "error", part.data
    return tokens, values


async def test_streamed_runs_and_a_second_turn_on_one_thread(dev_server: DevServer) -> None:
    server = dev_server.url
    client = get_client(url=server)
    [self_moa, *_] = await save_assistants(server)
    assert self_moa["name"] == "Self-MoA (local)" and len(self_moa["context"]["proposers"]) == 4
    thread = await client.threads.create()
    context = {"max_tokens": 32}  # overrides the saved max_tokens for this run only

    tokens, first = await stream_turn(
        server, thread["thread_id"], self_moa["assistant_id"], "Name a primary colour.",
        context=context,
    )  # fmt: skip
    assert {node for _, node, _ in tokens} == {"aggregator"}
    answer = first["messages"][-1]
    assert answer["type"] == "ai" and answer["content"].strip()
    assert "".join(token for *_, token in tokens).strip() == answer["content"].strip()
    assert [p["model"] for p in first["proposals"]] == ["local:smollm2"] * 4
    # The server started the embedded model itself, in its own session (stopped with it).
    processes = session_processes(dev_server.pid)
    assert any("llama_cpp.server" in p for p in processes), processes

    _, second = await stream_turn(
        server, thread["thread_id"], self_moa["assistant_id"], "And a secondary one?",
        context=context,
    )  # fmt: skip
    assert [m["type"] for m in second["messages"]] == ["human", "ai", "human", "ai"]
    assert len(second["proposals"]) == 4  # a new turn starts again at layer 1
    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"]["messages"][-1]["content"] == second["messages"][-1]["content"]


async def test_router_agent_streams_moa_tokens_from_the_subgraph(server: str) -> None:
    client = get_client(url=server)
    router_id = (await assistant(server, "router_agent"))["assistant_id"]
    thread = await client.threads.create()

    tokens, values = await stream_turn(
        server, thread["thread_id"], router_id, "Explain why the sky is blue.",
        context={"max_tokens": 32}, stream_subgraphs=True,
    )  # fmt: skip

    assert values["route"] == "hard"
    assert tokens and {node for _, node, _ in tokens} == {"aggregator"}
    assert all(event.startswith("messages|moa:") for event, _, _ in tokens)
    assert values["messages"][-1]["content"].strip()


async def test_review_pauses_the_run_in_studio_and_resumes_with_a_decision(server: str) -> None:
    client = get_client(url=server)
    saved = {a["name"]: a for a in await save_assistants(server)}
    review = saved["Fast MoA with review (local)"]["assistant_id"]
    thread = (await client.threads.create())["thread_id"]
    context = {"max_tokens": 24}

    await client.runs.wait(
        thread, review, input={"messages": [{"role": "user", "content": "Name a tree."}]},
        context=context,
    )  # fmt: skip
    state = await client.threads.get_state(thread)
    [request] = state["interrupts"]
    shown = request["value"]["proposals"]
    assert len(shown) >= 3 and all(p["content"] for p in shown)  # first_k=3 of 5
    assert state["next"] == ["collect_references"]

    keep = shown[0]["index"]
    done = await client.runs.wait(
        thread, review, command={"resume": {"keep": [keep]}}, context=context
    )
    assert done["aggregation"]["reviewed"] is True and done["messages"][-1]["content"].strip()
    assert [p["index"] for p in done["proposals"] if p["selected"]] == [keep]
    assert sum(p["status"] == "cancelled" for p in done["proposals"]) <= 2


async def test_the_openai_compatible_api_is_served_beside_studio(server: str) -> None:
    api = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key=API_KEY)
    ids = [m.id async for m in api.models.list()]
    assert {"moa", "vote", "moa-lite", "vote-local"} <= set(ids)
    assert "fast-moa-with-review-local" not in ids  # review needs a thread; the API has none
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="wrong").models.list()
    # Studio's own API answers, with no key: the key guards only /v1.
    assert await get_client(url=server).assistants.search(graph_id="moa")

    # A seed makes the run repeat; the aggregator has room to finish its sentence.
    question = [{"role": "user", "content": "Name a primary colour."}]
    done = await api.chat.completions.create(
        model="moa", messages=question, max_tokens=128,
        extra_body={"moa": {"max_tokens": 24, "seed": 7}},
    )  # fmt: skip
    assert done.model == "moa" and done.choices[0].finish_reason == "stop"
    assert done.choices[0].message.content.strip()
    one = await ChatOpenAI(base_url=local_base_url("smollm2"), api_key="x", model="smollm2",
                           max_tokens=1).ainvoke(question)  # fmt: skip
    # usage counts every call: at least the three proposers, each reading the question
    assert done.usage.prompt_tokens >= 3 * one.usage_metadata["input_tokens"]
    assert done.usage.completion_tokens > 0


async def test_anthropic_messages_with_a_forced_tool_on_the_embedded_model(server: str) -> None:
    # /v1/messages in langgraph dev: "any" forces a call on the embedded model too (which
    # ignores "required"; the server adds a choosing step), then the loop ends in text.
    api = anthropic.AsyncAnthropic(base_url=server, api_key=API_KEY, max_retries=0)
    short = {"moa": {"max_tokens": 16, "seed": 7}}
    tools = [{"name": "add", "description": "Add two integers a and b.", "input_schema": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"]}}, {"name": "final_answer", "description": "Give the final "
        "answer.", "input_schema": {"type": "object", "properties": {"answer": {
            "type": "string"}}, "required": ["answer"]}}]  # fmt: skip
    question = {"role": "user", "content": "What is 17 + 25?"}
    forced = await api.messages.create(model="moa", max_tokens=256, messages=[question],
                                       tools=tools, tool_choice={"type": "any"},
                                       extra_body=short)  # fmt: skip
    assert forced.stop_reason == "tool_use"
    [call] = [block for block in forced.content if block.type == "tool_use"]
    assert call.name in ("add", "final_answer") and isinstance(call.input, dict)
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "42"}
    turns = [question, {"role": "assistant", "content": forced.content},
             {"role": "user", "content": [result]}]  # fmt: skip
    async with api.messages.stream(model="moa", max_tokens=48, messages=turns, tools=tools,
                                   extra_body=short) as stream:  # fmt: skip
        final = await stream.get_final_message()
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert [block.type for block in final.content] == ["text"] and final.content[0].text.strip()


class Colour(BaseModel):
    """A colour and whether it is primary."""

    name: str
    primary: bool


@tool
def calculate(op: Literal["+", "-", "*", "/"], a: float, b: float) -> float:
    """Compute a op b for two numbers; op is one of + - * /."""
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else float("nan")}[op]


async def test_tools_and_structured_output_over_v1_on_the_embedded_model(server: str) -> None:
    # The 135M model calls a tool only when the choice is forced (docs/notes.md, "Tools").
    # Proposers write 16 tokens; the aggregator has room for a whole object (a cut-off object
    # is an error, not an answer), and a seed makes the run repeat.
    short = {"moa": {"max_tokens": 16, "seed": 7}}
    model = ChatOpenAI(base_url=f"{server}/v1", api_key=API_KEY, model="moa", max_tokens=256,
                       max_retries=0, extra_body=short)  # fmt: skip
    agent = create_agent(model, tools=[calculate], middleware=[ForceToolOnFirstCall("calculate")])
    out = await agent.ainvoke({"messages": [("user", "What is 17 + 25?")]})
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai"]
    assert out["messages"][1].tool_calls[0]["name"] == "calculate"
    assert isinstance(await model.with_structured_output(Colour).ainvoke("Name a colour."), Colour)

    api = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0)
    question = [{"role": "user", "content": "Name a primary colour."}]
    parsed = await api.chat.completions.parse(
        model="moa", messages=question, response_format=Colour, max_tokens=256, extra_body=short
    )
    assert isinstance(parsed.choices[0].message.parsed, Colour)
    forced = {"type": "function", "function": {"name": "calculate"}}
    async with api.chat.completions.stream(
        model="moa", messages=[{"role": "user", "content": "What is 6 times 7?"}],
        tools=[convert_to_openai_tool(calculate)], tool_choice=forced, max_tokens=256,
        extra_body=short,
    ) as stream:  # fmt: skip
        final = await stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls
    assert call.function.name == "calculate" and set(json.loads(call.function.arguments)) == {
        "op", "a", "b"
    }  # fmt: skip

    # "required" among two tools gives a call on the embedded server too (which ignores
    # "required"), through the Responses API.
    final_answer = {"type": "function", "name": "final_answer", "description": "Give the final "
                    "answer.", "parameters": {"type": "object", "properties": {"answer": {
                        "type": "string"}}, "required": ["answer"]}}  # fmt: skip
    add = {"type": "function", "name": "add", "description": "Add two integers a and b.",
           "parameters": {"type": "object", "properties": {"a": {"type": "integer"},
                          "b": {"type": "integer"}}, "required": ["a", "b"]}}  # fmt: skip
    required = await api.responses.create(
        model="moa", input="What is 17 + 25?", tools=[add, final_answer], tool_choice="required",
        max_output_tokens=256, extra_body=short,
    )  # fmt: skip
    assert [item.type for item in required.output] == ["function_call"]
    assert required.output[0].name in ("add", "final_answer")
