"""The straggler cut-off (first_k) on real timers: fast proposers answer, slow ones are cut.

These tests depend on wall-clock time (a fast and a slow proposer), so they are integration
tests.
"""

import asyncio

import pytest

from moa_graph import MoAConfigError, MoAContext, build_moa_graph
from moa_graph.calls import CUT_OFF
from moa_graph.stragglers import open_gates
from tests.fakes import QUESTION, ScriptedChatModel, run_moa, scripted_proposers

pytestmark = pytest.mark.integration


async def test_first_k_cuts_stragglers_and_leaves_no_task_or_gate_behind() -> None:
    fast = scripted_proposers("a", "b", "c", delay_s=0.01)
    slow = scripted_proposers("late", "later", delay_s=30)
    aggregator = ScriptedChatModel(reply="done")
    before = len(asyncio.all_tasks())

    out = await run_moa([*fast, *slow], aggregator, first_k=3, rounds=2)

    for layer in (1, 2):
        records = [p for p in out["proposals"] if p["layer"] == layer]
        assert [p["status"] for p in records] == ["ok", "ok", "ok", "cancelled", "cancelled"]
        assert records[3]["error"] == CUT_OFF and records[3]["latency_s"] < 5
    assert aggregator.calls[0][0].content.endswith("1. a\n2. b\n3. c")
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before
    assert open_gates() == 0
    assert all(m.concurrency.in_flight == 0 for m in slow)


async def test_first_k_waits_for_the_grace_period() -> None:
    models = [
        *scripted_proposers("a", "b", delay_s=0.01),
        ScriptedChatModel(model_name="soon", reply="c", delay_s=0.2),
        ScriptedChatModel(model_name="never", reply="d", delay_s=30),
    ]
    out = await run_moa(models, ScriptedChatModel(), first_k=2, straggler_grace_s=1.0)
    assert [p["status"] for p in out["proposals"]] == ["ok", "ok", "ok", "cancelled"]


def test_first_k_cuts_stragglers_on_sync_invoke() -> None:
    models = [*scripted_proposers("a", "b", delay_s=0.01), *scripted_proposers("slow", delay_s=5)]
    graph = build_moa_graph(proposers=models, aggregator=ScriptedChatModel()).compile()
    out = graph.invoke(QUESTION, context=MoAContext(first_k=2))
    assert [p["status"] for p in out["proposals"]] == ["ok", "ok", "cancelled"]
    assert out["proposals"][2]["latency_s"] < 2


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"first_k": 4}, "first_k=4: must be between min_proposals"),
    ],
)
async def test_first_k_out_of_range_fails_before_any_call(context, message) -> None:
    models = scripted_proposers("a", "b", "c")
    with pytest.raises(MoAConfigError, match=message):
        await run_moa(models, ScriptedChatModel(), **context)
    assert all(m.calls == [] for m in models)


@pytest.mark.parametrize("sync", [True, False])
async def test_first_k_holds_for_branches_that_start_after_the_others_finished(sync) -> None:
    models = [*scripted_proposers("a", "b", delay_s=0.01), *scripted_proposers("slow", delay_s=5)]
    graph = build_moa_graph(proposers=models, aggregator=ScriptedChatModel()).compile()
    args = (QUESTION, {"max_concurrency": 1})  # one branch at a time
    context = MoAContext(first_k=2)
    out = (
        graph.invoke(*args, context=context)
        if sync
        else await graph.ainvoke(*args, context=context)
    )
    assert [p["status"] for p in out["proposals"]] == ["ok", "ok", "cancelled"]
    assert models[2].calls == []  # it never started: the layer already had its answers
    assert open_gates() == 0


def test_grace_timers_end_with_their_layer_and_park_no_thread() -> None:
    import threading

    models = scripted_proposers("a", "b", "c", delay_s=0.01)
    graph = build_moa_graph(proposers=models, aggregator=ScriptedChatModel()).compile()
    context = MoAContext(first_k=1, straggler_grace_s=300)

    async def many() -> None:
        await asyncio.gather(*(graph.ainvoke(QUESTION, context=context) for _ in range(75)))

    graph.invoke(QUESTION, context=context)  # the process's one timer thread starts here
    start = threading.active_count()
    for _ in range(75):
        out = graph.invoke(QUESTION, context=context)
        assert [p["status"] for p in out["proposals"]] == ["ok", "ok", "ok"]
    asyncio.run(many())
    assert threading.active_count() == start
    assert open_gates() == 0
