"""`langgraph dev` with ``MOA_SERVE_GUARD_CONTEXT=true``: a caller's run context cannot steer
the server's keys, endpoints or budget, through the SDK, ``/mcp`` or ``/v1``, however the run
is started (a fresh run, ``command``, ``update_state``, ``RemoveMessage``, a checkpoint fork);
with ``MOA_SERVE_AUTH=true`` nothing of LangGraph's API answers without the key.

The served models point at a scripted upstream with the operator's key set; a listener stands in
for the attacker and must receive nothing.
"""

import ast
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from mcp import Client

from tests.dev_server import DevServer, run_dev_server
from tests.serve_process import ANSWER, UPSTREAM_KEY, Listener, Upstream

pytestmark = pytest.mark.integration

QUESTION = {"messages": [{"role": "user", "content": "Name a colour."}]}
MAX_CALLS = 6
CLIENT_KEY, ADMIN_KEY = "moa-client-key-1", "moa-admin-key-2"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[DevServer]:
    yield from run_dev_server(
        tmp_path_factory.mktemp("langgraph-dev-guarded"),
        MOA_SERVE_GUARD_CONTEXT="true", OPENAI_API_KEY=UPSTREAM_KEY,
        OPENAI_BASE_URL=upstream.server.url, MOA_PROPOSERS="openai:p,openai:p",
        MOA_AGGREGATOR="openai:agg", MOA_RETRIES="0", MOA_SERVE_MAX_CALLS=str(MAX_CALLS),
    )  # fmt: skip


def attack(attacker: Listener) -> dict[str, Any]:
    return {"aggregator": {"model": "openai:agg", "model_kwargs": {"base_url": attacker.url}}}


async def test_sdk_runs_cannot_move_a_model_to_the_attackers_url(guarded, upstream, attacker):
    client = get_client(url=guarded.url)
    before = len(upstream.server.requests)
    for context in (attack(attacker), {"proposers": [{"model": "openai:p",
                    "model_kwargs": {"openai_api_base": attacker.url}}]}):  # fmt: skip
        thread = await client.threads.create()
        run = await client.runs.create(thread["thread_id"], "moa", input=QUESTION, context=context)
        await client.runs.join(thread["thread_id"], run["run_id"])
        done = await client.runs.get(thread["thread_id"], run["run_id"])
        assert done["status"] == "error"
    assert attacker.received == [] and len(upstream.server.requests) == before

    thread = await client.threads.create()
    values = await client.runs.wait(thread["thread_id"], "moa", input=QUESTION,
                                    context={"max_tokens": 16, "rounds": 2})  # fmt: skip
    assert values["messages"][-1]["content"] == ANSWER  # allowed settings still work
    wait = await client.runs.wait(None, "moa", input=QUESTION, context={"rounds": 50},
                                  raise_error=False)  # fmt: skip
    assert "MOA_SERVE_MAX_ROUNDS" in str(wait)


async def test_mcp_tool_calls_cannot_choose_models_or_endpoints(guarded, upstream, attacker):
    async with httpx.AsyncClient(base_url=guarded.url, timeout=60) as http:

        async def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
            response = await http.post(
                "/mcp", json=body, headers={"Accept": "application/json, text/event-stream"}
            )
            assert response.status_code == 200, response.text
            return dict(response.json()["result"])

        tools = await rpc("tools/list", {})
        assert {"moa", "moa_answer"} <= {tool["name"] for tool in tools["tools"]}
        before = len(upstream.server.requests)
        for name, arguments in (("moa", QUESTION), ("moa_answer", {"question": "Name a colour."})):
            refused = await rpc(
                "tools/call", {"name": name, "arguments": arguments, "context": attack(attacker)}
            )
            assert refused["isError"] is True
            assert refused["content"][0]["text"] == "RequestRefused"  # langgraph-api: the type
        assert attacker.received == [] and len(upstream.server.requests) == before
        answered = await rpc("tools/call", {"name": "moa", "arguments": QUESTION})
        assert ANSWER in answered["content"][0]["text"]


def test_v1_in_langgraph_dev_refuses_request_chosen_models(guarded, upstream, attacker) -> None:
    before = len(upstream.server.requests)
    response = httpx.post(
        f"{guarded.url}/v1/chat/completions",
        json={"model": "moa", "messages": QUESTION["messages"], "moa": attack(attacker)},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "moa.aggregator"
    assert attacker.received == [] and len(upstream.server.requests) == before


async def test_an_mcp_client_gets_the_answer_tool_with_a_clean_schema(guarded) -> None:
    async with Client(f"{guarded.url}/mcp") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        schema = tools["moa_answer"].input_schema
        assert set(schema["properties"]) == {"question", "context", "include_records"}
        assert schema["required"] == ["question"]
        plain = await client.call_tool("moa_answer", {"question": "Name a colour."})
        # langgraph-api returns the repr of the graph's output: the answer only.
        assert ast.literal_eval(plain.content[0].text) == {"answer": ANSWER}
        recorded = await client.call_tool(
            "moa_answer", {"question": "Name a colour.", "include_records": True}
        )
        records = ast.literal_eval(recorded.content[0].text)["records"]
        assert (records["proposals_asked"], records["proposals_answered"]) == (2, 2)
        assert records["usage"]["input_tokens"] > 0


async def test_no_way_of_starting_a_node_lets_a_context_past_the_guard(guarded, upstream, attacker):
    client = get_client(url=guarded.url)
    before = len(upstream.server.requests)
    straight_to_the_aggregator = {
        "goto": "aggregator",
        "update": {"layer": 1, **QUESTION, "proposals": [{
            "layer": 1, "index": 0, "model": "openai:p", "sample": 0, "seed": None,
            "status": "ok", "content": "x", "error": None, "usage": None, "latency_s": 0.0,
            "selected": False}]},
    }  # fmt: skip
    stateless = await client.runs.wait(None, "moa", command=straight_to_the_aggregator,
                                       context=attack(attacker), raise_error=False)  # fmt: skip
    assert "RequestRefused" in str(stateless)

    thread = (await client.threads.create())["thread_id"]
    clean = await client.runs.wait(thread, "moa", input=QUESTION)
    answered = len(upstream.server.requests)
    last = clean["messages"][-1]["id"]
    history = await client.threads.get_history(thread, limit=50)
    after_layer = next(s for s in history if s["next"] == ["proposer", "proposer"])
    attempts = [
        {"command": {"goto": "aggregator"}},
        {"input": {"messages": [{"role": "remove", "content": "", "id": last}]}},
        {"input": None, "checkpoint_id": after_layer["checkpoint_id"]},
    ]
    for attempt in attempts:
        result = await client.runs.wait(thread, "moa", context=attack(attacker),
                                        raise_error=False, **attempt)  # fmt: skip
        assert "RequestRefused" in str(result), attempt
    await client.threads.update_state(
        thread, {"turn": "forged", "messages": [{"role": "user", "content": "x", "id": "forged"}]}
    )
    forged = await client.runs.wait(thread, "moa", input=None, context=attack(attacker),
                                    raise_error=False)  # fmt: skip
    assert "RequestRefused" in str(forged)
    assert attacker.received == []
    assert len(upstream.server.requests) == answered == before + 3  # the clean run only


async def test_the_budget_counts_the_calls_a_run_makes(guarded, upstream) -> None:
    client = get_client(url=guarded.url)
    task = {"layer": 1, "index": 0, "spec_index": 0, "sample": 0, "seed": None,
            "model": "openai:p", "messages": QUESTION["messages"], "gate": None}  # fmt: skip
    before = len(upstream.server.requests)
    forty = {"goto": [{"node": "proposer", "input": task}] * 40, "update": QUESTION}
    result = await client.runs.wait(None, "moa", command=forty, raise_error=False)
    assert "CallBudgetExceeded" in str(result)
    forty_made = len(upstream.server.requests) - before
    assert forty_made <= MAX_CALLS

    thread = (await client.threads.create())["thread_id"]
    clean = await client.runs.wait(thread, "moa", input=QUESTION)
    before = len(upstream.server.requests)
    await client.threads.update_state(
        thread, {"layer": -30, "turn": clean["messages"][-1]["id"]}, as_node="collect_references"
    )
    result = await client.runs.wait(thread, "moa", input=None, raise_error=False)
    assert "CallBudgetExceeded" in str(result)
    looped_made = len(upstream.server.requests) - before
    assert looped_made <= MAX_CALLS
    print(f"calls made: 40 Sends {forty_made}, layer -30 {looped_made} (budget {MAX_CALLS})")


async def test_every_graph_of_langgraph_json_honours_the_guard(guarded, upstream, attacker):
    client = get_client(url=guarded.url)
    before = len(upstream.server.requests)
    direct = await client.runs.wait(None, "router_agent", input={"messages": [
        {"role": "user", "content": "Hi"}]}, context={"max_tokens": 1_000_000},
        raise_error=False)  # fmt: skip
    assert "MOA_SERVE_MAX_TOKENS" in str(direct)
    tools = await client.runs.wait(
        None, "moa_agent", input=QUESTION, context={"tools": []}, raise_error=False
    )
    assert "RequestRefused" in str(tools)  # a caller's context cannot set tools
    assert len(upstream.server.requests) == before and attacker.received == []

    question = {"messages": [{"role": "user", "content": "What is 17 + 25?"}]}
    solved = await client.runs.wait(None, "moa_agent", input=question)
    kinds = [m["type"] for m in solved["messages"]]
    assert kinds == ["human", "ai", "tool", "ai"] and solved["messages"][2]["content"] == "42.0"
    assert solved["messages"][-1]["content"] == ANSWER


@pytest.fixture(scope="module")
def authenticated(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream):
    yield from run_dev_server(
        tmp_path_factory.mktemp("langgraph-dev-auth"),
        MOA_SERVE_AUTH="true", MOA_API_KEY=CLIENT_KEY, MOA_ADMIN_KEY=ADMIN_KEY,
        MOA_SERVE_GUARD_CONTEXT="true", OPENAI_API_KEY=UPSTREAM_KEY,
        OPENAI_BASE_URL=upstream.server.url, MOA_PROPOSERS="openai:p,openai:p",
        MOA_AGGREGATOR="openai:agg", MOA_RETRIES="0",
    )  # fmt: skip


def test_with_auth_on_nothing_answers_without_the_key(authenticated) -> None:
    requests = [
        ("POST", "/assistants/search", {}),
        ("POST", "/threads", {}),
        ("POST", "/runs/wait", {"assistant_id": "moa", "input": QUESTION}),
        ("POST", "/assistants", {"graph_id": "moa_answer", "name": "moa_answer"}),
        ("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}),
    ]
    headers = {"Accept": "application/json, text/event-stream"}
    for who in ({}, {"x-auth-scheme": "langsmith"}, {"Authorization": "Bearer wrong"},
                {"Authorization": CLIENT_KEY}):  # fmt: skip
        for method, path, body in requests:
            response = httpx.request(method, authenticated.url + path, json=body,
                                     headers={**headers, **who}, timeout=30)  # fmt: skip
            assert response.status_code in (401, 403), (who, path, response.text)


async def test_with_auth_on_the_key_runs_and_only_the_admin_key_saves_assistants(
    authenticated, upstream
) -> None:
    client = get_client(url=authenticated.url, api_key=CLIENT_KEY)
    values = await client.runs.wait(None, "moa", input=QUESTION)
    assert values["messages"][-1]["content"] == ANSWER
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await client.assistants.create("moa_answer", name="moa_answer")
    assert refused.value.response.status_code == 403
    admin = get_client(url=authenticated.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    saved = await admin.assistants.create("moa", name="operator's")
    assert saved["name"] == "operator's"
