"""The sync forms of the nodes: invoke and stream, with a layer's proposers concurrent.

The concurrency checks depend on wall-clock time (overlapping delays), so these are
integration tests.
"""

from moa_graph import build_moa_graph
from tests.fakes import QUESTION, ScriptedChatModel, scripted_proposers


def test_sync_invoke_and_stream() -> None:
    models = scripted_proposers("x", "y", delay_s=0.2)
    aggregator = ScriptedChatModel(reply="the final answer")
    graph = build_moa_graph(proposers=models, aggregator=aggregator).compile()

    out = graph.invoke(QUESTION, context={"rounds": 2})
    assert out["messages"][-1].content == "the final answer"
    assert [p["status"] for p in out["proposals"]] == ["ok"] * 4
    assert models[0].concurrency.peak == 1 and max(m.concurrency.peak for m in models) == 1

    tokens = [
        (chunk.text, meta["langgraph_node"])
        for chunk, meta in graph.stream(QUESTION, stream_mode="messages")
    ]
    assert {node for _, node in tokens} == {"aggregator"}
    assert "".join(text for text, _ in tokens).strip() == "the final answer"


def test_sync_proposers_of_a_layer_run_concurrently() -> None:
    from tests.fakes import Concurrency

    tracker = Concurrency()
    models = [ScriptedChatModel(delay_s=0.2, concurrency=tracker) for _ in range(3)]
    graph = build_moa_graph(proposers=models, aggregator=ScriptedChatModel()).compile()
    graph.invoke(QUESTION)
    assert tracker.peak == 3
