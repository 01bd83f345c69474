"""Evaluation suites: shipped data, generated items, references, the tool-call check."""

import json
import re
from pathlib import Path

import pytest

from moa_graph import MoAConfigError
from moa_graph.eval import load_suite
from moa_graph.eval.suites import call_match
from tests.eval_scripted import jsonl


async def test_mt_bench_ships_80_two_turn_questions_with_30_references() -> None:
    suite = load_suite("mt-bench")
    assert len(suite.items) == 80 and suite.judged and suite.turns == 2
    guided = [item for item in suite.items if item.judge_references]
    assert len(guided) == 30
    assert {item.category for item in guided} == {"math", "reasoning", "coding"}
    assert len(load_suite("mt-bench", n=5).items) == 5


def test_reasoning_gym_suites_are_seeded_and_scored_on_the_last_number() -> None:
    suite = load_suite("arithmetic", n=5, seed=7)
    assert [i.turns for i in suite.items] == [i.turns for i in load_suite("arithmetic", n=5).items]
    item = suite.items[0]
    assert item.turns[0].endswith("Give only the final number.")
    assert suite.checker is not None
    assert suite.checker(item, f"1 + 1 = 2, so the answer is {item.reference}") == 1.0
    assert suite.checker(item, f"{item.reference} is not it, it is 1000") == 0.0
    gsm = load_suite("gsm", n=2)
    assert gsm.checker is not None
    assert gsm.checker(gsm.items[0], f"The total is ${gsm.items[0].reference}.") == 1.0


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        ("nope", "suite='nope' is unknown"),
        ("jsonl:/no/such.jsonl", "not found"),
        ("reasoning-gym:no_such_dataset", "reasoning-gym refused"),
    ],
)
def test_bad_suites_are_refused(suite: str, message: str) -> None:
    with pytest.raises(MoAConfigError, match=re.escape(message)):
        load_suite(suite)


def test_mixed_references_and_alpaca_files(tmp_path: Path) -> None:
    mixed = jsonl(tmp_path / "m.jsonl", [{"prompt": "a", "reference": "1"}, {"prompt": "b"}])
    with pytest.raises(MoAConfigError, match="1 of 2 items have a 'reference'"):
        load_suite(mixed)
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "Say hi", "dataset": "helpful_base"}]))
    suite = load_suite(f"alpaca:{alpaca}")
    assert suite.judged and suite.items[0].turns == ("Say hi",)
    assert suite.items[0].category == "helpful_base"


def test_generated_suites_draw_distinct_items_or_say_how_many_they_make() -> None:
    pytest.importorskip("reasoning_gym")
    every = load_suite("arithmetic", n=121)
    assert len({item.turns for item in every.items}) == 121
    with pytest.raises(MoAConfigError, match="at most 121 distinct items"):
        load_suite("arithmetic", n=122)
    additions = load_suite("additions", n=600)
    assert len({item.turns for item in additions.items}) == 600
    assert additions.items[0].turns[0].startswith("Calculate ") and additions.checker
    first = additions.items[0]
    a, b = (int(x) for x in first.id.split("+"))
    assert 10 <= a <= 99 and 10 <= b <= 99 and first.reference == str(a + b)
    assert additions.checker(first, f"The sum is {a + b}.") == 1.0
    assert load_suite("additions", n=600).items == additions.items  # seeded


def test_call_match() -> None:
    reference = json.dumps([{"name": "calculate", "args": {"op": "*", "a": 17, "b": 4}}])
    assert call_match(reference, '[{"name": "calculate", "args": {"a": 17.0, "b": 4, "op": "*"}}]')
    assert not call_match(
        reference, '[{"name": "calculate", "args": {"a": 17, "b": 4, "op": "+"}}]'
    )
    assert not call_match(reference, "17 * 4 = 68")
    with pytest.raises(MoAConfigError, match="n <= 32400"):
        load_suite("tool-calls", n=40_000)
