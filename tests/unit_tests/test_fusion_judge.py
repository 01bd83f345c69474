"""The fusion judge (``aggregator_mode="analyze"``): a typed analysis, then the answer.

Spec-built models over a scripted OpenAI-compatible server, so the two judge calls are checked
as they arrive (forced tool, temperature 0, prompts).
"""

from collections.abc import Callable

import pytest
from langchain_core.messages import HumanMessage

from moa_graph import MoAConfigError, MoAContext, build_moa_graph
from tests.scripted_openai_server import Script, ScriptedOpenAIServer, ToolCall

ANALYSIS = {
    "consensus": ["The answer is 42."], "contradictions": [], "partial_coverage": [],
    "unique_insights": [{"insight": "6 x 7 = 42", "source": 2}], "blind_spots": [],
    "assessments": [{"source": 1, "assessment": "right"}, {"source": 2, "assessment": "right"}],
}  # fmt: skip


@pytest.fixture
def misfit() -> dict[str, bool]:
    return {"on": False}


@pytest.fixture
def server(
    openai_upstream: Callable[[Script], ScriptedOpenAIServer], misfit
) -> ScriptedOpenAIServer:
    def script(body: dict) -> "str | ToolCall":
        if body["model"] != "agg":
            return f"{body['model']} says 42"
        if body.get("tools"):
            return ToolCall("analysis", {"consensus": "x"} if misfit["on"] else ANALYSIS)
        return "final answer"

    return openai_upstream(script)


def judge(**settings) -> MoAContext:
    return MoAContext(proposers=["openai:p", "openai:q"], aggregator="openai:agg", retries=0,
                      aggregator_mode="analyze", **settings)  # fmt: skip


QUESTION = {"messages": [HumanMessage("What is 6 x 7?")]}


async def test_the_judge_analyzes_at_temperature_0_then_answers_from_the_analysis(
    server: ScriptedOpenAIServer,
) -> None:
    out = (
        await build_moa_graph()
        .compile()
        .ainvoke(QUESTION, context=judge(judge_criteria="correctness first"))
    )
    assert out["messages"][-1].content == "final answer"
    aggregation = out["aggregation"]
    assert (aggregation["mode"], aggregation["calls"], aggregation["fallback"]) == (
        "analyze", 2, None,
    )  # fmt: skip
    assert aggregation["analysis"] == ANALYSIS
    first, second = [b for b in server.requests if b["model"] == "agg"]
    assert first["temperature"] == 0.0 and first["tool_choice"]["function"]["name"] == "analysis"
    assert first["max_completion_tokens"] == 768  # judge_max_tokens; the answer keeps 512
    assert second["max_completion_tokens"] == 512
    system = first["messages"][0]["content"]
    assert "Source 1 to Source 2" in system and "Weigh these criteria: correctness first" in system
    assert "1. p says 42" in system and "openai:p" not in system  # anonymous sources
    final = second["messages"][0]["content"]
    assert "tools" not in second and '"6 x 7 = 42"' in final and "correctness first" in final


async def test_an_analysis_that_does_not_parse_falls_back_to_synthesis(server, misfit) -> None:
    misfit["on"] = True
    out = await build_moa_graph().compile().ainvoke(QUESTION, context=judge())
    aggregation = out["aggregation"]
    assert aggregation["mode"] == "synthesize" and aggregation["analysis"] is None
    assert aggregation["fallback"].startswith("analyze: the analysis did not parse")
    assert aggregation["calls"] == 2 and out["messages"][-1].content == "final answer"


def test_the_judges_two_calls_count_in_max_calls(server) -> None:
    with pytest.raises(MoAConfigError, match="may make 4 model calls"):
        build_moa_graph().compile().invoke(QUESTION, context=judge(max_calls=3))
