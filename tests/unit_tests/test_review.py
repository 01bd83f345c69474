"""Human review before aggregation: interrupt, resume with a decision."""

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from moa_graph import MoAConfigError, MoAContext, build_moa_graph
from tests.fakes import QUESTION, ScriptedChatModel, run_moa, scripted_proposers


async def test_review_keeps_drops_and_edits_before_aggregation() -> None:
    models = scripted_proposers("alpha", "beta", "gamma")
    aggregator = ScriptedChatModel(reply="final")
    graph = build_moa_graph(proposers=models, aggregator=aggregator).compile(
        checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "review"}}
    ctx = MoAContext(review=True)

    paused = await graph.ainvoke(QUESTION, config, context=ctx)
    [request] = paused["__interrupt__"]
    assert [p["content"] for p in request.value["proposals"]] == ["alpha", "beta", "gamma"]
    assert aggregator.calls == []

    again = await graph.ainvoke(Command(resume={"drop": [7]}), config, context=ctx)
    [request] = again["__interrupt__"]
    assert "no proposal has index [7]" in request.value["error"]

    out = await graph.ainvoke(
        Command(resume={"drop": [1], "edit": {"2": "GAMMA"}}), config, context=ctx
    )
    assert aggregator.calls[0][0].content.endswith("1. alpha\n2. GAMMA")
    assert [p["selected"] for p in out["proposals"]] == [True, False, True]
    assert out["proposals"][2]["content"] == "gamma"  # the record keeps what the model said
    assert out["aggregation"]["reviewed"] is True


async def test_review_resumed_with_keep_keeps_everything() -> None:
    aggregator = ScriptedChatModel()
    graph = build_moa_graph(proposers=scripted_proposers("a", "b"), aggregator=aggregator).compile(
        checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke(QUESTION, config, context={"review": True})
    await graph.ainvoke(Command(resume="keep"), config, context={"review": True})
    assert aggregator.calls[0][0].content.endswith("1. a\n2. b")


async def test_review_without_a_checkpointer_is_a_clear_error() -> None:
    models = scripted_proposers("a")
    with pytest.raises(MoAConfigError, match=r"review=True .* needs a checkpointer"):
        await run_moa(models, ScriptedChatModel(), review=True)
    assert models[0].calls == []
