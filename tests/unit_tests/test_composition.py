"""MoA inside larger graphs: as a subgraph node, called from a function node, the router agent."""

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.runtime import Runtime

from graphs.router_agent import RouterContext, build_router_agent, classify
from moa_graph import MoAConfigError, MoAContext, build_moa_graph
from tests.fakes import ScriptedChatModel

QUESTION = {"messages": [HumanMessage("What is MoA?")]}


def scripted_moa(error: str | None = None):
    proposers = [
        ScriptedChatModel(model_name="p1", reply="answer 1"),
        ScriptedChatModel(model_name="p2", reply="answer 2", error=error),
    ]
    aggregator = ScriptedChatModel(model_name="agg", reply="the final answer")
    graph = build_moa_graph(proposers=proposers, aggregator=aggregator).compile(name="moa")
    return graph, proposers, aggregator


def parent_with_moa_node(moa):
    builder = StateGraph(MessagesState, context_schema=MoAContext)
    builder.add_node("moa", moa)
    builder.add_edge(START, "moa")
    return builder.compile()


async def test_subgraph_returns_only_messages_and_reads_the_parent_context() -> None:
    moa, proposers, aggregator = scripted_moa()
    prompt = "Merge these answers:"

    out = await parent_with_moa_node(moa).ainvoke(
        QUESTION, context=MoAContext(rounds=2, aggregator_prompt=prompt)
    )

    assert set(out) == {"messages"}
    assert [m.content for m in out["messages"]] == ["What is MoA?", "the final answer"]
    assert all(len(p.calls) == 2 for p in proposers)  # rounds=2 reached the subgraph
    assert aggregator.calls[0][0].content.startswith(prompt)


async def test_subgraph_streams_aggregator_tokens_under_its_namespace() -> None:
    moa, _, _ = scripted_moa()
    tokens: dict[tuple[str, ...], list[str]] = {}
    async for namespace, chunk in parent_with_moa_node(moa).astream(
        QUESTION, stream_mode="messages", subgraphs=True
    ):
        message, metadata = chunk
        assert metadata["langgraph_node"] == "aggregator"
        tokens.setdefault(namespace, []).append(message.text)

    [(namespace, parts)] = tokens.items()
    assert len(namespace) == 1 and namespace[0].startswith("moa:")
    assert "".join(parts).strip() == "the final answer"


class ReviewState(MessagesState):
    draft_count: int
    proposal_errors: list[str]


async def test_function_node_calls_moa_and_keeps_its_own_keys() -> None:
    moa, _, _ = scripted_moa(error="boom")

    async def ask_moa(state: ReviewState, runtime: Runtime[MoAContext]) -> dict[str, object]:
        result = await moa.ainvoke({"messages": state["messages"]}, context=runtime.context)
        return {
            "messages": [result["messages"][-1]],
            "draft_count": len(result["proposals"]),
            "proposal_errors": [p["error"] for p in result["proposals"] if p["error"]],
        }

    builder = StateGraph(ReviewState, context_schema=MoAContext)
    builder.add_node("ask_moa", ask_moa)
    builder.add_edge(START, "ask_moa")
    out = await builder.compile().ainvoke(QUESTION, context=MoAContext(rounds=2))

    assert out["messages"][-1].content == "the final answer"
    assert out["draft_count"] == 4
    assert out["proposal_errors"] == ["RuntimeError: boom", "RuntimeError: boom"]


@pytest.mark.parametrize(
    ("question", "route"),
    [
        ("What is the capital of France?", "easy"),
        ("Hi!", "easy"),
        ("Why is the sky blue?", "hard"),
        ("Compare merge sort and quicksort.", "hard"),
        ("List twelve animals that live in the ocean and on land at the same time", "hard"),
    ],
)
def test_classify(question: str, route: str) -> None:
    assert classify(question, hard_min_words=12) == route


@pytest.mark.parametrize(("question", "route"), [("Who wrote Hamlet?", "easy"),
                                                 ("Explain MoA.", "hard")])  # fmt: skip
async def test_router_agent_sends_hard_questions_to_moa(question: str, route: str) -> None:
    moa, proposers, _ = scripted_moa()
    single = ScriptedChatModel(model_name="single", reply="quick answer")
    agent = build_router_agent(moa=moa, single_model=single).compile()

    out = await agent.ainvoke({"messages": [HumanMessage(question)]}, context=RouterContext())

    assert out["route"] == route
    answer = out["messages"][-1]
    assert isinstance(answer, AIMessage)
    assert answer.content == ("the final answer" if route == "hard" else "quick answer")
    assert len(single.calls) == (route == "easy")
    assert len(proposers[0].calls) == (route == "hard")
    assert "proposals" not in out


def test_router_context_names_its_bad_field() -> None:
    with pytest.raises(MoAConfigError, match="single_model='gpt-4o'"):
        RouterContext(single_model="gpt-4o")
    with pytest.raises(MoAConfigError, match="hard_min_words=0"):
        RouterContext(hard_min_words=0)


def test_router_context_reads_its_fields_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOA_HARD_MIN_WORDS", "5")
    monkeypatch.setenv("MOA_ROUNDS", "2")
    ctx = RouterContext()
    assert (ctx.hard_min_words, ctx.rounds) == (5, 2)
