"""OpenAI, OpenAI-compatible and Bedrock paths over real HTTP, with no API key.

`openai:` specs go to the embedded model's OpenAI-compatible server through OPENAI_BASE_URL
(the path of Together, vLLM and Ollama). `bedrock_converse:` specs go through langchain-aws
and botocore (real SigV4 signing and response parsing) to a local endpoint that speaks the
Bedrock Converse API (tests/bedrock_converse_endpoint.py).
"""

import json
import sqlite3
from pathlib import Path

import langsmith
import pytest
from langchain_aws import ChatBedrockConverse
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from moa_graph import MoAContext, build_moa_graph
from tests.bedrock_converse_endpoint import REGION, SECRET_ACCESS_KEY, ConverseEndpoint
from tests.integration_tests.conftest import OPENAI_KEY
from tests.tracing_capture import CapturedTraces

pytestmark = pytest.mark.integration

QUESTION = {"messages": [HumanMessage("Name one planet of the solar system.")]}
BEDROCK_MODEL = "local.smollm2"  # any id: the endpoint answers every one with the local model
MIXED = ["local:smollm2", "openai:smollm2", f"bedrock_converse:{BEDROCK_MODEL}"]


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
