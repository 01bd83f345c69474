"""Every run type through every face: the same answer and the same records, from one door.

Runs: the aggregator modes, a cascade that agrees and one that escalates, tools, a schema.
Faces: ``graph.ainvoke`` (the reference), ``graph.invoke``, ChatMoA invoke/stream/astream,
ChatMoA inside a streamed LangGraph node, ``create_agent`` with ChatMoA, ``MoAMiddleware``,
``/v1`` plain and streamed, the MCP answer graph, ``ask --json``, a batch row. Spec-built
models over a scripted OpenAI-compatible server, in-process.
"""

import argparse
import dataclasses
import io
import json
from collections.abc import Iterator
from contextlib import redirect_stdout
from typing import Any

import httpx
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langgraph.graph import START, MessagesState, StateGraph
from pydantic import BaseModel

from moa_graph import ChatMoA, MoAContext, build_moa_graph
from moa_graph.agents import MoAMiddleware
from moa_graph.answer_graph import build_answer_graph
from moa_graph.batch import abatch_generate
from moa_graph.cli import ask
from moa_graph.run_summary import RunSummary, summarize
from moa_graph.serving.app import create_app
from moa_graph.serving.catalog import ServedModel
from moa_graph.tool_turns import schema_tool
from tests.fakes import ScriptedChatModel
from tests.scripted_openai_server import ScriptedOpenAIServer, forced_call, question_of

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two numbers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


class Pair(BaseModel):
    a: int
    b: int


def script(body: dict[str, Any]) -> Any:
    """Forced tools are called; ``cheap`` agrees on "agree" questions; ``agg`` selects or ends."""
    if body.get("tools") and body["messages"][-1]["role"] != "tool":
        return forced_call(body)
    if body["model"] == "cheap":
        return "It is 42." if "agree" in question_of(body) else f"It is {body['seed']}."
    if body["model"] == "agg":
        system = str(body["messages"][0]["content"])
        return "The most consistent response is Response 2." if "consistent" in system else (
            "the final answer")  # fmt: skip
    return "p says 42"


BASE = {"proposers": ["openai:p n=2", "openai:p"], "aggregator": "openai:agg", "seed": 1,
        "retries": 0, "max_tokens": 64}  # fmt: skip
QUESTION = "What is 6 x 7?"
RUNS: dict[str, dict[str, Any]] = {
    "synthesize": {},
    "select": {"settings": {"aggregator_mode": "select"}},
    "vote": {"settings": {"aggregator_mode": "vote"}},
    "sequential": {"settings": {"aggregator_mode": "sequential", "window_size": 2}},
    "analyze": {"settings": {"aggregator_mode": "analyze"}},
    "cascade agreeing": {"settings": {"cascade": ["openai:cheap n=3"]},
                         "question": "agree: what is 6 x 7?"},
    "cascade escalating": {"settings": {"cascade": ["openai:cheap n=3"]}},
    "tools": {"tools": True, "question": "Add 17 and 25."},
    "schema": {"schema": True, "question": "Pair 3 with 4."},
}  # fmt: skip


@dataclasses.dataclass
class Run:
    name: str
    settings: dict[str, Any]
    question: str
    tools: bool
    schema: bool

    @property
    def context(self) -> MoAContext:
        ctx = MoAContext(**self.settings)
        if self.tools:
            return ctx.with_tools([ADD], "required")
        if self.schema:
            return ctx.with_tools(answer_tool=schema_tool(Pair.model_json_schema(), "Pair"))
        return ctx


@dataclasses.dataclass
class Seen:
    """What a face reported: the answer, and the summary fields it reports (None: not reported)."""

    answer: Any
    usage: int | None = None
    panel: tuple[int, int, bool] | None = None
    mode: str | None = None


def answer_of(text: str, calls: list[dict[str, Any]], run: Run) -> Any:
    if run.schema:
        return calls[0]["args"] if calls else json.loads(text)
    return [(c["name"], c["args"]) for c in calls] if calls else text


def from_summary(summary: RunSummary, run: Run) -> Seen:
    return Seen(
        answer_of(summary["answer"], summary["tool_calls"], run),
        summary["usage"]["total_tokens"],
        (summary["proposals_asked"], summary["proposals_answered"], summary["degraded"]),
        summary["aggregation"]["mode"],
    )


def from_message(message: AIMessage, run: Run) -> Seen:
    meta = message.response_metadata
    return Seen(
        answer_of(message.text, message.tool_calls, run),
        (message.usage_metadata or {}).get("total_tokens"),
        (meta["proposals_asked"], meta["proposals_answered"], meta["degraded"]),
        meta["aggregation"]["mode"],
    )


def chat(run: Run) -> Any:
    model = ChatMoA(context=MoAContext(**run.settings))
    if run.tools:
        return model.bind_tools([ADD], tool_choice="required")
    return model


def merged(chunks: list[AIMessageChunk]) -> AIMessage:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return AIMessage(content=total.content, tool_calls=total.tool_calls,
                     usage_metadata=total.usage_metadata,
                     response_metadata=total.response_metadata)  # fmt: skip


async def graph_invoke(run: Run, sync: bool) -> Seen:
    graph = build_moa_graph().compile()
    inputs = {"messages": [HumanMessage(run.question)]}
    if sync:
        return from_summary(summarize(graph.invoke(inputs, context=run.context)), run)
    return from_summary(summarize(await graph.ainvoke(inputs, context=run.context)), run)


async def chat_invoke(run: Run) -> Seen:
    if run.schema:
        parsed = ChatMoA(context=MoAContext(**run.settings)).with_structured_output(Pair)
        return Seen((await parsed.ainvoke(run.question)).model_dump())
    return from_message(chat(run).invoke(run.question), run)


async def chat_stream(run: Run, sync: bool) -> Seen:
    if run.schema:
        pytest.skip("with_structured_output streams the parsed object, not a message")
    if sync:
        return from_message(merged(list(chat(run).stream(run.question))), run)
    return from_message(merged([c async for c in chat(run).astream(run.question)]), run)


async def chat_in_streamed_node(run: Run) -> Seen:
    if run.schema:
        pytest.skip("a node stores messages; the schema's object is with_structured_output's")
    model = chat(run)

    async def answer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState).add_node(answer).add_edge(START, "answer").compile()
    final: dict[str, Any] = {}
    async for mode, part in graph.astream({"messages": [HumanMessage(run.question)]},
                                          stream_mode=["messages", "values"]):  # fmt: skip
        if mode == "values":
            final = part
    return from_message(final["messages"][-1], run)


async def agent_with_chat(run: Run) -> Seen:
    model = ChatMoA(context=MoAContext(**run.settings))
    if run.schema:
        agent = create_agent(model, response_format=Pair)
        out = await agent.ainvoke({"messages": [HumanMessage(run.question)]})
        return Seen(out["structured_response"].model_dump())

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    agent = create_agent(model, tools=[add] if run.tools else [])
    out = await agent.ainvoke({"messages": [HumanMessage(run.question)]})
    # With tools the agent runs the call and asks again: its first reply is the run's answer.
    return from_message(out["messages"][1 if run.tools else -1], run)


async def v1(run: Run, streamed: bool) -> Seen:
    app = create_app(graph=build_moa_graph().compile(),
                     models={"m": ServedModel("m", "", settings=run.settings)})  # fmt: skip
    body: dict[str, Any] = {"model": "m", "stream": streamed,
                            "messages": [{"role": "user", "content": run.question}]}  # fmt: skip
    if streamed:
        body["stream_options"] = {"include_usage": True}
    if run.tools:
        body |= {"tools": [ADD], "tool_choice": "required"}
    if run.schema:
        schema = {"name": "Pair", "schema": Pair.model_json_schema()}
        body |= {"response_format": {"type": "json_schema", "json_schema": schema}}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        response = await c.post("/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    if not streamed:
        reply = response.json()
        message = reply["choices"][0]["message"]
        calls = [{"name": t["function"]["name"], "args": json.loads(t["function"]["arguments"])}
                 for t in message.get("tool_calls") or []]  # fmt: skip
        moa = reply["moa"]
        panel = (moa["proposals_asked"], moa["proposals_answered"], moa["degraded"])
        answer = answer_of(message.get("content") or "", calls, run)
        return Seen(answer, reply["usage"]["total_tokens"], panel)
    events = [json.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: {")]  # fmt: skip
    text, name, arguments, usage, moa = "", None, "", None, None
    for event in events:
        assert "error" not in event, event
        for choice in event["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                name = name or call["function"].get("name")
                arguments += call["function"].get("arguments", "")
        usage = event.get("usage") or usage
        moa = event.get("moa") or moa
    calls = [{"name": name, "args": json.loads(arguments)}] if name else []
    return Seen(answer_of(text, calls, run), usage["total_tokens"],
                (moa["proposals_asked"], moa["proposals_answered"], moa["degraded"]))  # fmt: skip


async def mcp_answer_graph(run: Run) -> Seen:
    if run.tools or run.schema:
        pytest.skip("the MCP answer graph takes a question only: no tools, no schema")
    graph = build_answer_graph(build_moa_graph().compile()).compile()
    out = await graph.ainvoke({"question": run.question, "include_records": True},
                              context=run.context)  # fmt: skip
    records = out["records"]
    return Seen(out["answer"], records["usage"]["total_tokens"],
                (records["proposals_asked"], records["proposals_answered"], records["degraded"]),
                records["aggregation"]["mode"])  # fmt: skip


async def ask_json(run: Run) -> Seen:
    if run.tools or run.schema:
        pytest.skip("moa-graph ask takes no tools or schema")
    printed = io.StringIO()
    with redirect_stdout(printed):
        await ask._ask(run.question, run.context, argparse.Namespace(json=True))
    summary = json.loads(printed.getvalue())
    return from_summary(summary, run)


async def batch_row(run: Run) -> Seen:
    if run.tools:
        pytest.skip("batch rows take a schema, not tools")
    schema = Pair if run.schema else None
    [record] = [r async for r in abatch_generate([run.question], context=MoAContext(
        **{**run.settings, "seed": None}), schema=schema)]  # fmt: skip
    assert record["status"] == "ok", record["error"]
    answer = (
        record["answer"]
        if run.schema
        else answer_of(record["answer"], record.get("tool_calls", []), run)
    )
    usage = record["usage"]
    return Seen(answer, usage["input_tokens"] + usage["output_tokens"], None,
                record["aggregation"]["mode"])  # fmt: skip


FACES = {
    "graph.invoke": lambda run: graph_invoke(run, sync=True),
    "ChatMoA.invoke": chat_invoke,
    "ChatMoA.stream": lambda run: chat_stream(run, sync=True),
    "ChatMoA.astream": lambda run: chat_stream(run, sync=False),
    "ChatMoA in a streamed node": chat_in_streamed_node,
    "create_agent(ChatMoA)": agent_with_chat,
    "/v1": lambda run: v1(run, streamed=False),
    "/v1 streamed": lambda run: v1(run, streamed=True),
    "MCP answer graph": mcp_answer_graph,
    "ask --json": ask_json,
    "batch row": batch_row,
}


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedOpenAIServer]:
    scripted = ScriptedOpenAIServer(script).start()
    yield scripted
    scripted.stop()


@pytest.fixture(autouse=True)
def upstream(server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)


def make_run(name: str) -> Run:
    spec = RUNS[name]
    return Run(name, {**BASE, **spec.get("settings", {})}, spec.get("question", QUESTION),
               spec.get("tools", False), spec.get("schema", False))  # fmt: skip


@pytest.mark.parametrize("face", list(FACES))
@pytest.mark.parametrize("name", list(RUNS))
async def test_every_face_gives_the_references_answer(name: str, face: str) -> None:
    run = make_run(name)
    reference = await graph_invoke(run, sync=False)
    seen = await FACES[face](run)
    assert seen.answer == reference.answer
    # Batch rows draw their own seeds: a cascade that escalates uses other first-stage calls.
    if seen.usage is not None and not (face == "batch row" and "cascade" in name):
        assert seen.usage == reference.usage
    if seen.panel is not None:
        assert seen.panel == reference.panel
    if seen.mode is not None:
        assert seen.mode == reference.mode


@pytest.mark.parametrize("name", list(RUNS))
async def test_the_middleware_injects_the_summarys_references(name: str) -> None:
    run = make_run(name)
    middleware = MoAMiddleware(MoAContext(**run.settings))
    panel = summarize(await build_moa_graph().compile().ainvoke(
        {"messages": [HumanMessage(run.question)]}, context=middleware.panel))  # fmt: skip
    own = ScriptedChatModel(reply="the agent's answer")
    agent = create_agent(own, middleware=[middleware])
    await agent.ainvoke({"messages": [HumanMessage(run.question)]})
    system = own.calls[0][0].text
    assert panel["references"] and all(reference in system for reference in panel["references"])


@pytest.mark.parametrize("mode", ["synthesize", "vote", "select", "sequential", "analyze"])
@pytest.mark.parametrize("name", ["tools", "schema"])
def test_every_face_builds_the_same_context(name: str, mode: str) -> None:
    """ChatMoA's bind_tools and with_structured_output, /v1, batch --schema: one context."""
    from moa_graph.serving.requests import ChatRequest, prepare
    from moa_graph.structured import AnswerSchema
    from moa_graph.trust import RequestPolicy

    run = make_run(name)
    run.settings["aggregator_mode"] = mode
    expected = run.context
    assert expected.proposer_tools == (mode in ("vote", "select"))
    model = ChatMoA(context=MoAContext(**run.settings))
    if run.schema:
        # What with_structured_output binds (langchain-core: the schema, tool_choice "any").
        via_chat = model._settings(**model.bind_tools([Pair], tool_choice="any").kwargs)
        via_batch = AnswerSchema.of(Pair).context_for(MoAContext(**run.settings))
    else:
        via_chat = model._settings(**(chat(run).kwargs if run.tools else {}))
        via_batch = expected
    body = {"model": "m", "messages": [{"role": "user", "content": run.question}]}
    if run.tools:
        body |= {"tools": [ADD], "tool_choice": "required"}
    if run.schema:
        schema = {"name": "Pair", "schema": Pair.model_json_schema()}
        body |= {"response_format": {"type": "json_schema", "json_schema": schema}}
    _, via_v1, _ = prepare(ChatRequest(**body), ServedModel("m", "", settings=run.settings),
                           RequestPolicy(max_calls=10_000))  # fmt: skip

    def shape(ctx: MoAContext) -> tuple[Any, ...]:
        # A Pydantic model renders its schema with or without titles; the tools are the same.
        names = [tool["function"]["name"] for tool in ctx.tools or []]
        return names, ctx.tool_choice, ctx.proposer_tools

    for ctx in (via_chat, via_batch, via_v1):
        assert shape(ctx) == shape(expected)
