"""Choosing a panel from measured systems: the greedy search and the held-out check."""

import json
from pathlib import Path
from typing import Any

import pytest

from moa_graph.cli import main
from moa_graph.eval.panel import achoose_panel, describe, greedy_panel
from tests.eval_scripted import jsonl


def test_greedy_panel_grows_by_what_the_members_do_together() -> None:
    answers = {"a": ["1", "9", "3", "9"], "b": ["9", "2", "9", "9"], "c": ["1", "2", "9", "9"]}
    scores = {"a": [1.0, 0, 1, 0], "b": [0.0, 1, 0, 0], "c": [1.0, 1, 0, 0]}
    # Coverage: a (items 0, 2; c ties and comes later), then b (item 1; c ties again); then c
    # adds nothing.
    assert greedy_panel(answers, scores, 3, "coverage") == [("a", 0.5), ("b", 0.75)]
    # Vote: with two members a draw goes to the first, so neither b nor c changes a's answers,
    # and the third does not help either: the panel is a alone.
    assert greedy_panel(answers, scores, 3, "vote") == [("a", 0.5)]
    # A vote of two adds nothing, but the third member can: growth goes past the flat step.
    answers = {"a": ["1", "9"], "b": ["5", "2"], "c": ["7", "2"]}
    scores = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [0.0, 1.0]}
    assert greedy_panel(answers, scores, 3, "vote") == [("a", 0.5), ("b", 0.5), ("c", 1.0)]


def panel_script(body: dict[str, Any]) -> str:
    """For question "q n" (reference n + 1): a is right on even n, b on multiples of 3."""
    n = int(body["messages"][-1]["content"].split()[-1])
    right = {"a": n % 2 == 0, "b": n % 3 == 0, "c": False}[body["model"]]
    return f"It is {n + 1}." if right else f"It is {n + 100}."


async def test_choose_panel_picks_on_one_split_and_judges_on_the_other(
    openai_upstream, tmp_path: Path
) -> None:
    openai_upstream(panel_script)
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": f"q {i}", "reference": i + 1}
                                         for i in range(12)])  # fmt: skip
    candidates = ["openai:a", "openai:b", "openai:c"]
    whole = await achoose_panel(suite, candidates, how="coverage", selection_share=1.0)
    split = await achoose_panel(suite, candidates, selection_share=0.5, out=tmp_path / "o")
    assert whole.chosen == ["openai:a", "openai:b"] and whole.held_out is None
    assert whole.single_scores == {"openai:a": 0.5, "openai:b": 0.3333, "openai:c": 0.0}
    assert split.selection.items == 6 and split.held_out is not None
    assert [s.name for s in split.held_out.systems] == ["single:" + split.chosen[0], "panel"]
    written = json.loads((tmp_path / "o" / "panel.json").read_text())
    assert written == split.context and written["aggregator_mode"] == "vote"
    # Each member as it was measured: the candidates answered greedy, so the panel does too.
    assert all(member["temperature"] == 0.0 for member in written["proposers"])
    assert "| 1 | openai:" in describe(split)


def test_cli_choose_panel_writes_a_context_file(
    openai_upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    openai_upstream(panel_script)
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": f"q {i}", "reference": i + 1}
                                         for i in range(8)])  # fmt: skip
    status = main(["eval", "--suite", suite, "--choose-panel", "openai:a", "--choose-panel",
                   "openai:c", "--out", str(tmp_path / "o"), "--no-progress"])  # fmt: skip
    assert status == 0
    assert json.loads((tmp_path / "o" / "panel.json").read_text())["proposers"] == [
        {"model": "openai:a", "temperature": 0.0}
    ]
    captured = capsys.readouterr()
    assert "## Panel chosen on 4 selection items" in captured.out and "panel.json" in captured.err
    assert main(["eval", "--suite", suite]) == 2  # neither --systems nor --choose-panel
