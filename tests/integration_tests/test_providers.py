"""OpenAI, OpenAI-compatible and Bedrock paths over real HTTP, with no API key.

`openai:` specs go to the embedded model's OpenAI-compatible server through OPENAI_BASE_URL
(the path of Together, vLLM and Ollama). `bedrock_converse:` specs go through langchain-aws
and botocore (real SigV4 signing and response parsing) to a local endpoint that speaks the
Bedrock Converse API (tests/bedrock_converse_endpoint.py).
"""

import json
import sqlite3
import warnings
from pathlib import Path
from typing import Literal

import boto3
import langsmith
import pytest
from botocore.exceptions import ClientError
from langchain.agents import create_agent
from langchain_aws import ChatBedrockConverse
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from pydantic import BaseModel

from moa_graph import ChatMoA, MoAContext, build_moa_graph
from moa_graph.agents import ForceToolOnFirstCall
from tests.bedrock_converse_endpoint import (
    NO_TOOL_CONFIG,
    REGION,
    SECRET_ACCESS_KEY,
    ConverseEndpoint,
)
from tests.integration_tests.conftest import OPENAI_KEY
from tests.tracing_capture import CapturedTraces

pytestmark = pytest.mark.integration

QUESTION = {"messages": [HumanMessage("Name one planet of the solar system.")]}
BEDROCK_MODEL = "local.smollm2"  # any id: the endpoint answers every one with the local model
MIXED = ["local:smollm2", "openai:smollm2", f"bedrock_converse:{BEDROCK_MODEL}"]
# langchain-aws forces a tool choice only for model ids it knows support it (Claude, Nova, ...).
BEDROCK_TOOL_SPEC = "bedrock_converse:amazon.nova-lite-v1:0"


async def test_openai_specs_on_a_compatible_server_stream_the_aggregator(
    hosted_env: ConverseEndpoint,
) -> None:
    ctx = MoAContext(proposers=["openai:smollm2"] * 2, aggregator="openai:smollm2", max_tokens=24)
    tokens, final = [], {}
    async for mode, chunk in (
        build_moa_graph()
        .compile()
        .astream(QUESTION, context=ctx, stream_mode=["messages", "values"])
    ):
        if mode == "messages":
            assert chunk[1]["langgraph_node"] == "aggregator"
            tokens.append(chunk[0].text)
        else:
            final = chunk
    assert len(tokens) > 2
    assert "".join(tokens).strip() == final["messages"][-1].text.strip()
    for p in final["proposals"]:
        assert p["model"] == "openai:smollm2" and p["content"], p
        assert p["usage"] and 0 < p["usage"]["output_tokens"] <= 24  # max_tokens is honoured


async def test_bedrock_converse_proposer_signs_and_reports_usage(
    hosted_env: ConverseEndpoint,
) -> None:
    def bedrock(secret: str) -> ChatBedrockConverse:
        return ChatBedrockConverse(
            model=BEDROCK_MODEL, endpoint_url=hosted_env.url, region_name=REGION,
            aws_secret_access_key=secret, max_tokens=24, disable_streaming=True,
        )  # fmt: skip

    before = len(hosted_env.requests), hosted_env.rejected
    graph = build_moa_graph(proposers=[bedrock(SECRET_ACCESS_KEY), bedrock("wrong-secret")])
    out = await graph.compile().ainvoke(QUESTION, context={"max_tokens": 24})

    signed, forged = out["proposals"]
    assert signed["content"] and signed["error"] is None
    assert forged["content"] is None and forged["error"].startswith("AccessDeniedException")
    assert (len(hosted_env.requests), hosted_env.rejected) == (before[0] + 1, before[1] + 1)
    model_id, request = hosted_env.requests[-1]
    assert model_id == BEDROCK_MODEL and request["inferenceConfig"]["maxTokens"] == 24
    usage = hosted_env.usages[-1]
    assert signed["usage"] == {
        "input_tokens": usage["inputTokens"], "output_tokens": usage["outputTokens"],
    }  # fmt: skip
    assert out["messages"][-1].text.strip()  # the run went on with the signed proposer


async def test_mixed_layer_of_local_openai_and_bedrock_specs(hosted_env: ConverseEndpoint) -> None:
    before = len(hosted_env.requests)
    out = (
        await build_moa_graph()
        .compile()
        .ainvoke(QUESTION, context=MoAContext(proposers=MIXED, max_tokens=24))
    )
    assert [p["model"] for p in out["proposals"]] == MIXED
    for p in out["proposals"]:
        assert p["content"] and p["error"] is None, str(p)
        assert p["usage"] and p["usage"]["input_tokens"] > 0, p
    assert len(hosted_env.requests) == before + 1
    assert out["messages"][-1].text.strip()


async def test_no_secret_in_traces_state_or_checkpoints(
    hosted_env: ConverseEndpoint, tmp_path: Path
) -> None:
    traces = CapturedTraces()
    database = tmp_path / "checkpoints.sqlite"
    async with AsyncSqliteSaver.from_conn_string(str(database)) as saver:
        graph = build_moa_graph().compile(checkpointer=saver, name="moa")
        with langsmith.tracing_context(enabled=True, client=traces.client):
            out = await graph.ainvoke(
                QUESTION,
                {"configurable": {"thread_id": "t1"}},
                context=MoAContext(proposers=MIXED, max_tokens=16),
            )
        state = await graph.aget_state({"configurable": {"thread_id": "t1"}})

    bodies = "\n".join(traces.bodies())
    assert "invocation_params" in bodies
    model_runs = {run["name"]: run for run in traces.runs() if run["run_type"] == "llm"}
    assert set(model_runs) == {f"{spec} (layer 1)" for spec in MIXED} | {
        "local:smollm2 (aggregator)"
    }
    for name, run in model_runs.items():  # token usage from each provider, over HTTP
        usage = run["outputs"]["generations"][0][0]["message"]["kwargs"]["usage_metadata"]
        assert usage["input_tokens"] > 0, name
    with sqlite3.connect(database) as db:
        checkpoints = b"".join(
            bytes(value) if isinstance(value, bytes) else str(value).encode()
            for table in ("checkpoints", "writes")
            for row in db.execute(f"SELECT * FROM {table}")
            for value in row
        )
    assert b"openai:smollm2" in checkpoints
    state_text = json.dumps([out, state.values], default=repr)
    for secret in (OPENAI_KEY, SECRET_ACCESS_KEY):
        assert secret not in bodies
        assert secret not in state_text
        assert secret.encode() not in checkpoints


@tool
def calculate(op: Literal["+", "-", "*", "/"], a: float, b: float) -> float:
    """Compute a op b for two numbers; op is one of + - * /."""
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else float("nan")}[op]


class Colour(BaseModel):
    name: str
    primary: bool


def test_the_converse_endpoint_refuses_tool_blocks_without_a_tool_config(
    hosted_env: ConverseEndpoint,
) -> None:
    # Straight through boto3: langchain-aws itself rewrites such blocks as text, with a warning.
    client = boto3.client("bedrock-runtime", endpoint_url=hosted_env.url)
    turn = [
        {"role": "user", "content": [{"text": "What is 1 + 2?"}]},
        {"role": "assistant", "content": [{"toolUse": {
            "toolUseId": "t1", "name": "calculate", "input": {"op": "+", "a": 1, "b": 2}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1",
                                                     "content": [{"text": "3.0"}]}}]},
    ]  # fmt: skip
    with pytest.raises(ClientError, match="ValidationException") as refused:
        client.converse(modelId=BEDROCK_MODEL, messages=turn)
    assert NO_TOOL_CONFIG in str(refused.value)  # as Bedrock does


def test_bedrock_converse_tool_loop_and_structured_output(hosted_env: ConverseEndpoint) -> None:
    # Short proposals; room for the whole object in the aggregator's call.
    context = MoAContext(proposers=[BEDROCK_TOOL_SPEC] * 2,
                         aggregator=f"{BEDROCK_TOOL_SPEC} max_tokens=128", max_tokens=24,
                         retries=0, seed=7)  # fmt: skip
    moa = ChatMoA(context=context)
    assert isinstance(moa.with_structured_output(Colour).invoke("Name a primary colour."), Colour)
    forced = hosted_env.requests[-1][1]["toolConfig"]
    assert forced["toolChoice"] == {"tool": {"name": "Colour"}}

    start, refused = len(hosted_env.requests), len(hosted_env.refused)
    agent = create_agent(moa, tools=[calculate], middleware=[ForceToolOnFirstCall("calculate")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = agent.invoke({"messages": [("user", "What is 17 + 25?")]})
    # Proposers get the tool turns as text from moa-graph, not from langchain-aws's rewrite.
    assert not [w for w in caught if "without toolConfig" in str(w.message)]
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai"]
    assert out["messages"][1].tool_calls[0]["name"] == "calculate"
    assert len(hosted_env.refused) == refused  # no request was refused
    second_turn = hosted_env.requests[start + 3 :]  # two proposers, then the aggregator
    *proposers, aggregator = [request for _, request in second_turn]
    blocks = [list(b) for m in aggregator["messages"] for b in m["content"]]
    assert ["toolUse"] in blocks and ["toolResult"] in blocks and "toolConfig" in aggregator
    for request in proposers:  # no tools: the tool turns arrive as text
        assert "toolConfig" not in request
        assert "[called tools: calculate(" in json.dumps(request["messages"])
