"""The guard is a property of the run: every node admits its context, every call is counted.

In-process, with LangGraph's own ways of starting a node that the API exposes (``Command`` with
``goto``/``update``, ``update_state``, a checkpoint fork); the same attacks over real HTTP are in
tests/integration_tests/test_studio_guard.py.
"""

import gc

import pytest
from langchain_core.messages import HumanMessage, RemoveMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command, Send

from moa_graph import MoAContext, build_moa_graph, run_scope
from moa_graph.run_scope import CallBudgetExceeded
from moa_graph.trust import RequestPolicy, RequestRefused
from tests.fakes import QUESTION, ScriptedChatModel, scripted_proposers

ATTACK = {"aggregator": {"model": "local:smollm2", "model_kwargs": {"base_url": "http://x/v1"}}}
PROPOSAL = {
    "layer": 1, "index": 0, "model": "p0", "sample": 0, "seed": None, "status": "ok",
    "content": "an answer", "error": None, "usage": None, "latency_s": 0.0, "selected": False,
}  # fmt: skip


def guarded(max_calls: int = 24, checkpointer: InMemorySaver | None = None):
    proposers = scripted_proposers("a", "b")
    aggregator = ScriptedChatModel(model_name="agg", reply="final")
    graph = build_moa_graph(
        proposers=proposers, aggregator=aggregator, context_guard=RequestPolicy(max_calls=max_calls)
    ).compile(checkpointer=checkpointer)
    return graph, [*proposers, aggregator]


def calls(models: list[ScriptedChatModel]) -> int:
    return sum(len(m.calls) for m in models)


async def test_a_command_straight_to_the_aggregator_is_admitted_first() -> None:
    graph, models = guarded()
    command = Command(goto="aggregator", update={"layer": 1, "proposals": [PROPOSAL],
                                                 "messages": QUESTION["messages"]})  # fmt: skip
    with pytest.raises(RequestRefused) as caught:
        await graph.ainvoke(command, context=ATTACK)
    assert caught.value.param == "context.aggregator.model_kwargs.base_url"
    assert calls(models) == 0


async def test_a_thread_continued_by_goto_update_state_or_fork_is_admitted() -> None:
    graph, models = guarded(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke(QUESTION, config, context=MoAContext())
    made = calls(models)
    last = (await graph.aget_state(config)).values["messages"][-1]
    attempts = [
        Command(goto="aggregator"),
        {"messages": [RemoveMessage(last.id)]},
    ]
    for attempt in attempts:
        with pytest.raises(RequestRefused):
            await graph.ainvoke(attempt, config, context=ATTACK)
    forged = {"turn": "forged", "messages": [HumanMessage("x", id="forged")]}
    await graph.aupdate_state(config, forged)
    with pytest.raises(RequestRefused):
        await graph.ainvoke(None, config, context=ATTACK)
    history = [s async for s in graph.aget_state_history(config)]
    after_layer = next(s for s in history if s.next == ("proposer", "proposer"))
    with pytest.raises(RequestRefused):
        await graph.ainvoke(None, after_layer.config, context=ATTACK)
    assert calls(models) == made


async def test_forty_proposer_sends_make_at_most_the_budget() -> None:
    graph, models = guarded(max_calls=6)
    task = {"layer": 1, "spec_index": 0, "sample": 0, "seed": None, "model": "p0",
            "messages": QUESTION["messages"], "gate": None}  # fmt: skip
    sends = [Send("proposer", {**task, "index": i % 2}) for i in range(40)]
    with pytest.raises(CallBudgetExceeded, match="MOA_SERVE_MAX_CALLS"):
        await graph.ainvoke(Command(goto=sends, update=QUESTION), context=MoAContext())
    assert calls(models) <= 6


async def test_a_layer_written_below_one_cannot_loop_past_the_budget() -> None:
    graph, models = guarded(max_calls=6, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke(QUESTION, config, context=MoAContext())
    last = (await graph.aget_state(config)).values["messages"][-1]
    forged = {"layer": -30, "turn": last.id}  # the layer loop goes on from -30
    await graph.aupdate_state(config, forged, as_node="collect_references")
    with pytest.raises(CallBudgetExceeded):
        await graph.ainvoke(None, config, context=MoAContext())
    assert calls(models) <= 3 + 6  # the clean turn, then at most the budget


async def test_a_callers_own_max_calls_counts_too() -> None:
    graph, models = guarded()
    sends = [Send("proposer", {"layer": 1, "index": 0, "spec_index": 0, "sample": 0,
                               "seed": None, "model": "p0", "messages": QUESTION["messages"],
                               "gate": None})] * 5  # fmt: skip
    with pytest.raises(CallBudgetExceeded, match="max_calls allows"):
        await graph.ainvoke(Command(goto=sends, update=QUESTION), context=MoAContext(max_calls=3))
    assert calls(models) == 3


async def test_ledgers_of_finished_runs_are_dropped() -> None:
    graph, _ = guarded()
    for _ in range(20):
        await graph.ainvoke(QUESTION, context=MoAContext())
    gc.collect()
    await graph.ainvoke(QUESTION, context=MoAContext())  # a new ledger sweeps the old ones
    assert len(run_scope._ledgers) <= 2


async def test_router_agent_admits_its_single_models_budget() -> None:
    from graphs.router_agent import build_router_agent

    single = ScriptedChatModel(reply="easy answer")
    agent = build_router_agent(single_model=single, context_guard=RequestPolicy()).compile()
    with pytest.raises(RequestRefused) as caught:
        await agent.ainvoke({"messages": [("user", "Hi")]}, context={"max_tokens": 10**6})
    assert caught.value.param == "context.max_tokens" and single.calls == []
    out = await agent.ainvoke({"messages": [("user", "Hi")]}, context={"max_tokens": 64})
    assert out["messages"][-1].text == "easy answer" and len(single.calls) == 1
