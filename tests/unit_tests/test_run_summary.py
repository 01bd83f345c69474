"""Reading a finished run: what the summary says of cut-off answers and calls without usage."""

from collections.abc import Callable

from langchain_core.messages import HumanMessage

from moa_graph import MoAContext, build_moa_graph
from moa_graph.run_summary import summarize
from tests.scripted_openai_server import CutOff, Script, ScriptedOpenAIServer


async def test_an_answer_that_stopped_at_max_tokens_is_flagged(
    openai_upstream: Callable[[Script], ScriptedOpenAIServer],
) -> None:
    openai_upstream(lambda body: CutOff("It is 4") if body["model"] == "p" else "It is 42.")
    graph = build_moa_graph().compile()
    base = {"proposers": ["openai:p", "openai:q"], "aggregator": "openai:q", "retries": 0}
    question = {"messages": [HumanMessage("What is 6 x 7?")]}

    synthesized = summarize(await graph.ainvoke(question, context=MoAContext(**base)))
    assert (synthesized["cut_off"], synthesized["proposals_cut_off"]) == (False, 1)
    assert synthesized["calls"] == 3 and synthesized["calls_without_usage"] == 0

    vote = MoAContext(**{**base, "proposers": ["openai:p", "openai:p", "openai:q"]},
                      aggregator_mode="vote")  # fmt: skip
    voted = summarize(await graph.ainvoke(question, context=vote))
    assert voted["answer"] == "It is 4" and voted["cut_off"] is True
