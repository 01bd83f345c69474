"""A cascade: a cheap first stage answers alone when it agrees, else the MoA runs.

Spec-built models over a scripted OpenAI-compatible server, so the calls each path makes are
counted where they arrive.
"""

from collections.abc import Callable

import pytest
from langchain_core.messages import HumanMessage

from moa_graph import MoAConfigError, MoAContext, build_moa_graph
from tests.scripted_openai_server import Script, ScriptedOpenAIServer


def script(body: dict) -> str:
    """cheap agrees on "agree" questions and splits by seed otherwise; p proposes; agg ends."""
    question = body["messages"][-1]["content"]
    if body["model"] == "cheap":
        return "It is 42." if "agree" in question or body["seed"] % 2 else f"It is {body['seed']}."
    return "final" if body["model"] == "agg" else "p says 42"


@pytest.fixture
def server(openai_upstream: Callable[[Script], ScriptedOpenAIServer]) -> ScriptedOpenAIServer:
    return openai_upstream(script)


def context(**settings) -> MoAContext:
    settings = {"seed": 1, "proposers": ["openai:p"] * 2, **settings}
    return MoAContext(cascade=["openai:cheap n=3"], aggregator="openai:agg", retries=0,
                      **settings)  # fmt: skip


async def test_an_agreeing_first_stage_answers_alone(server: ScriptedOpenAIServer) -> None:
    out = (
        await build_moa_graph()
        .compile()
        .ainvoke({"messages": [HumanMessage("agree: what is 6 x 7?")]}, context=context())
    )
    assert out["messages"][-1].content == "It is 42."
    assert out["aggregation"]["mode"] == "cascade" and out["aggregation"]["calls"] == 0
    assert [b["model"] for b in server.requests] == ["cheap"] * 3  # no layer, no aggregator
    assert [(p["layer"], p["selected"]) for p in out["proposals"]] == [
        (0, True), (0, False), (0, False),
    ]  # fmt: skip


async def test_a_split_first_stage_escalates_to_the_moa(server: ScriptedOpenAIServer) -> None:
    out = (
        await build_moa_graph()
        .compile()
        .ainvoke({"messages": [HumanMessage("what is 6 x 7?")]}, context=context())
    )
    assert out["messages"][-1].content == "final"
    assert out["aggregation"]["mode"] == "synthesize"
    models = [b["model"] for b in server.requests]
    assert sorted(models) == ["agg", "cheap", "cheap", "cheap", "p", "p"]
    first_stage = [p for p in out["proposals"] if p["layer"] == 0]
    assert len(first_stage) == 3 and not any(p["selected"] for p in first_stage)
    layer_one = next(b for b in server.requests if b["model"] == "p")
    assert "It is" not in str(layer_one["messages"])  # the first stage is not a reference


async def test_a_lower_agreement_share_lets_a_majority_answer(server) -> None:
    out = (
        await build_moa_graph()
        .compile()
        .ainvoke(
            {"messages": [HumanMessage("what is 6 x 7?")]}, context=context(cascade_agreement=0.5)
        )
    )
    seeds_agreeing = sum(b["seed"] % 2 for b in server.requests if b["model"] == "cheap")
    assert (out["aggregation"]["mode"] == "cascade") == (seeds_agreeing >= 2)


def test_the_first_stage_counts_in_max_calls_and_draws_in_studio(server) -> None:
    with pytest.raises(MoAConfigError, match="may make 6 model calls"):
        build_moa_graph().compile().invoke(
            {"messages": [HumanMessage("q")]}, context=context(max_calls=5)
        )
    drawn = build_moa_graph().compile().get_graph()
    assert "cascade_answer" in drawn.nodes
    assert any(e.source == "collect_references" and e.target == "cascade_answer"
               for e in drawn.edges)  # fmt: skip


@pytest.mark.parametrize(
    ("proposers", "new_calls", "reused"),
    [
        (["openai:cheap n=5"], 2, [0, 1, 2, None, None]),  # the same model and settings: reused
        (["openai:p", "openai:cheap n=2"], 0, [None, 0, 1]),  # where the shapes match
        (["openai:cheap n=2 temperature=0.1"], 2, [None, None]),  # other settings: asked
    ],
)
async def test_an_escalation_reuses_first_stage_answers_where_the_shapes_match(
    server: ScriptedOpenAIServer, proposers: list[str], new_calls: int, reused: list
) -> None:
    out = (
        await build_moa_graph()
        .compile()
        .ainvoke(
            {"messages": [HumanMessage("what is 6 x 7?")]},
            context=context(proposers=proposers, aggregator_mode="vote"),
        )
    )
    layer_one = sorted((p for p in out["proposals"] if p["layer"] == 1), key=lambda p: p["index"])
    assert [p.get("reused_from") for p in layer_one] == reused
    cheap_calls = sum(b["model"] == "cheap" for b in server.requests)
    assert cheap_calls == 3 + new_calls
    for p in layer_one:
        if "reused_from" in p:  # counted once: on the first-stage record
            first_stage = {q["index"]: q for q in out["proposals"] if q["layer"] == 0}
            assert first_stage[p["reused_from"]]["content"] == p["content"]
            assert p["usage"] is None and p["latency_s"] == 0
    reported = sum(p["usage"]["output_tokens"] for p in out["proposals"] if p["usage"])
    assert reported == server.usage["output_tokens"]  # no answer's tokens counted twice


async def test_first_k_asks_the_whole_layer_again(server: ScriptedOpenAIServer) -> None:
    await (
        build_moa_graph()
        .compile()
        .ainvoke(
            {"messages": [HumanMessage("what is 6 x 7?")]},
            context=context(proposers=["openai:cheap n=3"], first_k=3, aggregator_mode="vote"),
        )
    )
    assert sum(b["model"] == "cheap" for b in server.requests) == 6
