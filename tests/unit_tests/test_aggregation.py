"""The aggregator modes through the graph: select, vote, sequential, and failures."""

import random
import re

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from moa_graph import AGGREGATE_AND_SYNTHESIZE_PROMPT
from moa_graph.aggregation import (
    AggregationSettings,
    aggregate,
    parse_selection,
    sequential_windows,
)
from moa_graph.agreement import Candidate, majority
from moa_graph.prompts import SELECT_MOST_CONSISTENT_PROMPT
from tests.fakes import ScriptedChatModel, run_moa, scripted_proposers


async def test_select_returns_the_chosen_proposal_verbatim() -> None:
    models = scripted_proposers("It is 6.", "The answer is **5**.", "5")
    judge = ScriptedChatModel(reply="The most consistent response is Response 2.")

    out = await run_moa(models, judge, aggregator_mode="select")

    assert out["messages"][-1].content == "The answer is **5**."
    agg = out["aggregation"]
    assert (agg["mode"], agg["requested_mode"], agg["chosen"], agg["calls"]) == (
        "select", "select", 1, 1,
    )  # fmt: skip
    assert agg["judge_text"] == "The most consistent response is Response 2."
    assert judge.calls[0][0].content.startswith(SELECT_MOST_CONSISTENT_PROMPT)
    assert [p["selected"] for p in out["proposals"]] == [False, True, False]


async def test_select_falls_back_to_synthesis_when_the_choice_cannot_be_read() -> None:
    models = scripted_proposers("6", "5")
    judge = ScriptedChatModel(reply="They all look fine to me.")

    out = await run_moa(models, judge, aggregator_mode="select")

    agg = out["aggregation"]
    assert agg["mode"] == "synthesize" and agg["requested_mode"] == "select"
    assert (
        agg["fallback"].startswith("select:") and agg["judge_text"] == "They all look fine to me."
    )
    assert agg["calls"] == 2 and agg["usage"] == {"input_tokens": 20, "output_tokens": 4}
    assert judge.calls[1][0].content.startswith(AGGREGATE_AND_SYNTHESIZE_PROMPT)
    assert out["messages"][-1].content == "They all look fine to me."  # the synthesis reply


@pytest.mark.parametrize(
    ("text", "count", "expected"),
    [
        ("The most consistent response is Response 3.", 3, 2),
        ("response #1", 2, 0),
        ("2", 2, 1),
        ("Response 4", 3, None),
        ("Response 0", 3, None),
        ("none of them", 3, None),
    ],
)
def test_parse_selection(text: str, count: int, expected: int | None) -> None:
    assert parse_selection(text, count) == expected


async def test_vote_takes_the_most_common_answer_without_an_aggregator_call() -> None:
    models = scripted_proposers("I think 6", "2 + 3 = 5", "It is 5.0", "Answer: 1,000")
    aggregator = ScriptedChatModel(reply="never")

    out = await run_moa(models, aggregator, aggregator_mode="vote")

    assert out["messages"][-1].content == "2 + 3 = 5"  # the first text with the winning answer
    assert aggregator.calls == []
    agg = out["aggregation"]
    assert (agg["mode"], agg["chosen"], agg["calls"], agg["model"]) == ("vote", 1, 0, None)
    assert [p["selected"] for p in out["proposals"]] == [False, True, False, False]


@pytest.mark.parametrize(
    ("texts", "pattern", "winner"),
    [
        (["a 7", "b 8", "c 8", "d 7"], None, 0),  # a draw goes to the earliest
        (["Paris.", "the paris", "Lyon"], None, 0),  # no numbers everywhere: normalized text
        (["x=3 so 4", "answer is 3", "answer is 4"], r"answer is (\d+)", 1),
        (["no match", "none"], r"answer is (\d+)", None),
    ],
)
def test_majority(texts: list[str], pattern: str | None, winner: int | None) -> None:
    assert majority(texts, pattern) == winner


async def test_vote_falls_back_to_synthesis_when_no_proposal_matches_the_pattern() -> None:
    aggregator = ScriptedChatModel(reply="synthesized")
    out = await run_moa(
        scripted_proposers("foo", "bar"),
        aggregator,
        aggregator_mode="vote",
        answer_pattern=r"is (\d+)",
    )
    assert out["aggregation"]["mode"] == "synthesize"
    assert out["aggregation"]["fallback"].startswith("vote:")
    assert out["messages"][-1].content == "synthesized"


def test_sequential_windows() -> None:
    assert sequential_windows(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert sequential_windows(2, 3) == [[0, 1]]


async def test_sequential_slides_a_window_and_keeps_the_best_answer_so_far() -> None:
    models = scripted_proposers(*(f"candidate {i}" for i in range(5)))
    aggregator = ScriptedChatModel(reply="best")

    out = await run_moa(models, aggregator, aggregator_mode="sequential", window_size=2)

    first, second, third = (call[0].content for call in aggregator.calls)
    assert "1. candidate 0\n2. candidate 1" in first and "candidate 2" not in first
    assert "Best response so far:\nbest" in second
    assert second.endswith("1. best\n2. candidate 2\n3. candidate 3")
    assert third.endswith("1. best\n2. candidate 4")
    agg = out["aggregation"]
    assert (agg["mode"], agg["calls"]) == ("sequential", 3)
    assert all(p["selected"] for p in out["proposals"])


async def test_select_maps_a_shuffled_choice_back_to_its_proposal() -> None:
    models = scripted_proposers(*(f"r{i}" for i in range(5)))
    judge = ScriptedChatModel(reply="Response 1")

    out = await run_moa(models, judge, aggregator_mode="select", shuffle_references=True, seed=11)

    first_shown = re.search(r"\n1\. (r\d)", judge.calls[0][0].content).group(1)
    assert out["messages"][-1].content == first_shown
    assert out["proposals"][out["aggregation"]["chosen"]]["content"] == first_shown


async def test_a_failed_aggregator_keeps_the_proposals_in_its_error() -> None:
    from moa_graph import AggregatorError

    aggregator = ScriptedChatModel(model_name="agg", error="overloaded")
    with pytest.raises(AggregatorError, match="aggregator agg: RuntimeError: overloaded") as err:
        await run_moa(scripted_proposers("a", "b"), aggregator)
    assert [p["content"] for p in err.value.records] == ["a", "b"]


def test_when_calls_are_expected_a_vote_without_one_is_synthesized() -> None:
    settings = AggregationSettings(
        mode="vote", prompt="P", reference_format="numbered", shuffle=False,
        answer_pattern=None, window_size=3, calls_expected=True,
    )  # fmt: skip
    candidates = [Candidate(0, "seven"), Candidate(1, "seven")]
    steps = aggregate(settings, [HumanMessage("3 + 4?")], candidates, random.Random(0))
    request = next(steps)
    assert request.stream  # the aggregator writes (and may call the tool)
    with pytest.raises(StopIteration) as done:
        steps.send(AIMessage("", tool_calls=[{"name": "add", "args": {}, "id": "1"}]))
    outcome = done.value.value
    assert outcome.mode == "synthesize" and outcome.fallback == "vote: no proposal made a tool call"
