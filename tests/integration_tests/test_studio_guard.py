"""`langgraph dev` with ``MOA_SERVE_GUARD_CONTEXT=true``: a caller's run context cannot steer
the server's keys, endpoints or budget, through the SDK, ``/mcp`` or ``/v1``.

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


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[DevServer]:
    yield from run_dev_server(
        tmp_path_factory.mktemp("langgraph-dev-guarded"),
        MOA_SERVE_GUARD_CONTEXT="true", OPENAI_API_KEY=UPSTREAM_KEY,
        OPENAI_BASE_URL=upstream.server.url, MOA_PROPOSERS="openai:p,openai:p",
        MOA_AGGREGATOR="openai:agg", MOA_RETRIES="0",
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
