"""The LangSmith trace tree of a run, captured offline (no endpoint, no key)."""

import langsmith
import pytest
from langchain_core.messages import HumanMessage

from moa_graph import MoAContext, build_moa_graph
from tests.fakes import ScriptedChatModel
from tests.tracing_capture import CapturedTraces

QUESTION = {"messages": [HumanMessage("What is MoA?")]}


def moa_graph():
    proposers = [
        ScriptedChatModel(model_name="alpha", reply="a"),
        ScriptedChatModel(model_name="beta", error="rate limited"),
    ]
    aggregator = ScriptedChatModel(model_name="omega", reply="final")
    return build_moa_graph(proposers=proposers, aggregator=aggregator).compile(name="moa")


async def test_one_trace_with_named_proposer_and_aggregator_runs() -> None:
    traces = CapturedTraces()
    with langsmith.tracing_context(enabled=True, client=traces.client):
        await moa_graph().ainvoke(QUESTION, context=MoAContext(rounds=2))
    runs = traces.runs()
    by_name = {run["name"]: run for run in runs}

    root = runs[0]
    assert root["name"] == "moa" and root.get("parent_run_id") is None
    assert {run["trace_id"] for run in runs} == {root["id"]}
    for k in (1, 2):
        alpha, beta = by_name[f"alpha (layer {k})"], by_name[f"beta (layer {k})"]
        assert {"proposer", f"layer:{k}"} <= set(alpha["tags"])
        assert alpha["extra"]["metadata"].items() >= {
            ("moa_layer", k), ("moa_proposer_index", 0), ("moa_model", "alpha"),
        }  # fmt: skip
        assert beta["extra"]["metadata"]["moa_proposer_index"] == 1
        assert "error" not in alpha
        assert "rate limited" in beta["error"]  # the failed proposer is an errored run
        message = alpha["outputs"]["generations"][0][0]["message"]["kwargs"]
        assert message["usage_metadata"]["input_tokens"] == 10  # token usage on model runs
    aggregator = by_name["omega (aggregator)"]
    assert {"aggregator", "layer:3"} <= set(aggregator["tags"])
    assert aggregator["extra"]["metadata"]["moa_layer"] == 3
    assert "error" not in root
    # The model runs hang under their graph nodes.
    parents = {run["id"]: run["name"] for run in runs}
    assert parents[by_name["alpha (layer 1)"]["parent_run_id"]] == "proposer"
    assert parents[aggregator["parent_run_id"]] == "aggregator"


async def test_each_timed_out_attempt_is_an_errored_run_not_a_pending_one() -> None:
    traces = CapturedTraces()
    slow = ScriptedChatModel(model_name="slow", delay_s=5)
    fast, aggregator = ScriptedChatModel(model_name="fast"), ScriptedChatModel()
    graph = build_moa_graph(proposers=[slow, fast], aggregator=aggregator).compile()
    with langsmith.tracing_context(enabled=True, client=traces.client):
        await graph.ainvoke(QUESTION, context=MoAContext(proposer_timeout_s=0.1, retries=1))
    attempts = [run for run in traces.runs() if run["name"] == "slow (layer 1)"]
    assert len(attempts) == 2  # the first attempt and one retry
    for run in attempts:
        assert run.get("end_time") and "no answer within 0.1 s" in run["error"]


async def test_user_tags_metadata_and_run_name_reach_the_trace() -> None:
    traces = CapturedTraces()
    with langsmith.tracing_context(enabled=True, client=traces.client):
        await moa_graph().ainvoke(
            QUESTION,
            config={"run_name": "nightly-eval", "tags": ["eval"], "metadata": {"batch": 7}},
        )
    runs = traces.runs()
    assert runs[0]["name"] == "nightly-eval"
    assert len(runs) > 8
    for run in runs:
        assert "eval" in run["tags"], run["name"]
        assert run["extra"]["metadata"]["batch"] == 7, run["name"]


async def test_tracing_is_off_unless_turned_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        monkeypatch.delenv(name, raising=False)
    traces = CapturedTraces()
    with langsmith.tracing_context(client=traces.client):
        out = await moa_graph().ainvoke(QUESTION)
    assert out["messages"][-1].content == "final"
    assert traces.bodies() == []
