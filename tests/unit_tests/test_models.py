"""Hosted providers: missing credentials fail when the model is created, naming what to set."""

import dataclasses

import pytest
from langchain_core.messages import HumanMessage

from moa_graph import MoAConfigError, MoAContext, build_moa_graph
from moa_graph.call_plan import ModelSource
from moa_graph.errors import MissingCredentials
from moa_graph.models import clear_model_cache, load_chat_model
from moa_graph.run_summary import panel_status
from tests.scripted_openai_server import ScriptedOpenAIServer


def create(spec: str):
    return load_chat_model(spec, temperature=0.7, max_tokens=64)


def test_openai_without_a_key_names_the_provider_and_the_variable() -> None:
    with pytest.raises(MoAConfigError, match="'openai:gpt-4o-mini': the OpenAI provider") as err:
        create("openai:gpt-4o-mini")
    assert "set OPENAI_API_KEY" in str(err.value)


def test_bedrock_without_a_region_or_credentials_names_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = "bedrock_converse:anthropic.claude-3-haiku-20240307-v1:0"
    with pytest.raises(MoAConfigError, match="Amazon Bedrock needs a region: set AWS_DEFAULT"):
        create(spec)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(MoAConfigError, match="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        create(spec)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    model = create(spec)
    assert model.model_id == "anthropic.claude-3-haiku-20240307-v1:0"
    assert model.client.meta.config.retries["total_max_attempts"] == 1  # no botocore retry


async def test_missing_credentials_stop_the_run_before_any_model_is_called() -> None:
    ctx = MoAContext(proposers=["openai:gpt-4o-mini"], aggregator="openai:gpt-4o")
    with pytest.raises(MoAConfigError, match="OPENAI_API_KEY"):
        await build_moa_graph().compile().ainvoke({"messages": [HumanMessage("hi")]}, context=ctx)


def test_openai_compatible_servers_also_get_max_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    # langchain-openai sends only max_completion_tokens, which llama.cpp's server ignores.
    monkeypatch.setenv("OPENAI_API_KEY", "any")
    assert "extra_body" not in create("openai:gpt-4o-mini").model_dump(exclude_none=True)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    assert create("openai:qwen2.5").extra_body == {"max_tokens": 64}
    assert create("openai:qwen2.5").max_retries == 0  # MoAContext.retries does the retrying


async def test_skip_unavailable_leaves_out_a_proposer_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = ScriptedOpenAIServer(lambda body: f"from {body['model']}").start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    panel = {"proposers": ["openai:p", "bedrock_converse:amazon.nova-lite-v1:0"],
             "aggregator": "openai:agg", "retries": 0}  # fmt: skip
    graph = build_moa_graph().compile()
    question = {"messages": [HumanMessage("Name a colour.")]}
    try:
        with pytest.raises(MissingCredentials, match="Amazon Bedrock needs"):
            await graph.ainvoke(question, context=MoAContext(**panel))
        assert server.requests == []  # stopped before any call
        out = await graph.ainvoke(question, context=MoAContext(**panel, skip_unavailable=True))
    finally:
        server.stop()
    skipped = out["proposals"][1]
    assert skipped["status"] == "failed" and skipped["error"].startswith("ModelUnavailable")
    assert [b["model"] for b in server.requests] == ["p", "agg"]
    assert out["messages"][-1].content == "from agg"
    assert panel_status(out["proposals"])["degraded"] is True


def test_made_says_when_creating_a_runs_models_cannot_block(monkeypatch) -> None:
    # The layer node runs on the event loop only when made() is True (else in a thread).
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    clear_model_cache()
    ctx = MoAContext(proposers=["openai:p n=2"], aggregator="openai:agg", retries=0)
    source = ModelSource(None, None)
    assert not source.made(ctx)
    source.create_all(ctx)
    assert source.made(ctx)
    assert not source.made(dataclasses.replace(ctx, temperature=0.3))  # other models
    # Bounded by the specs the context holds, never by its rounds: a guarded server checks a
    # caller's rounds after this (with a loop over rounds this line would not return).
    assert source.made(dataclasses.replace(ctx, rounds=10**12))
    assert ModelSource([[load_chat_model("openai:p", temperature=0, max_tokens=8)]], None).made(
        ctx
    )  # instances need nothing made but the aggregator


def test_two_event_loops_in_one_script_both_get_answers() -> None:
    """Two ``asyncio.run`` in one process, over kept-alive connections (a hosted API's)."""
    import asyncio

    from moa_graph import MoAContext, build_moa_graph
    from tests.scripted_openai_server import ScriptedOpenAIServer

    server = ScriptedOpenAIServer(keep_alive=True).start()
    graph = build_moa_graph().compile()
    context = MoAContext(proposers=["openai:p", "openai:q"], aggregator="openai:agg", retries=0)
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("OPENAI_API_KEY", "test-key")
            env.setenv("OPENAI_BASE_URL", server.url)
            runs = [asyncio.run(graph.ainvoke({"messages": [("user", "hi")]}, context=context))
                    for _ in range(2)]  # fmt: skip
    finally:
        server.stop()
    for out in runs:
        assert [p["status"] for p in out["proposals"]] == ["ok", "ok"], out["proposals"]
        assert out["messages"][-1].text.startswith("answer from agg")
