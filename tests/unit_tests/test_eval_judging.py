"""An LLM judge over the answers: pairwise with the swap, and single grading."""

from pathlib import Path

import pytest

from moa_graph.eval import arun_eval
from tests.eval_scripted import (
    A,
    B,
    jsonl,
    scripted,
)
from tests.scripted_openai_server import ScriptedOpenAIServer


async def test_always_a_judge_gives_consistency_0_and_win_rate_one_half(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = scripted(judge=lambda body: "Assistant A is better. [[A]]").start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    try:
        suite = jsonl(tmp_path / "s.jsonl", [{"prompt": f"q {i}"} for i in range(6)])
        report = await arun_eval(suite, [B, A], judge="openai:judge")
    finally:
        server.stop()
    [comparison] = report.comparisons
    assert comparison.estimate == 0.5 and comparison.consistency == 0.0
    assert comparison.first_position_rate == 1.0
    assert comparison.verdict == "not distinguishable"
    judge_calls = [body for body in server.requests if body["model"] == "judge"]
    assert len(judge_calls) == 12  # both orders per item
    assert {body["temperature"] for body in judge_calls} == {0.0}


async def test_fair_judge_survives_the_swap_and_single_grading_averages_ratings(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": f"q {i}"} for i in range(10)])
    report = await arun_eval(suite, [B, A], judge="openai:judge")
    [comparison] = report.comparisons
    assert (comparison.estimate, comparison.consistency, comparison.first_position_rate) == (
        1.0, 1.0, 0.5,
    )  # fmt: skip
    assert comparison.verdict == "better" and comparison.length_adjusted is not None
    record = next(r for r in report.records if r["system"] == A)
    assert [j["system_is"] for j in record["judgments"]] == ["A", "B"]
    assert record["judgments"][0]["text"] == "[[A]]"

    report = await arun_eval(suite, [B, A], judge="openai:judge", judge_mode="single")
    assert report.metric == "rating"
    assert [s.quality for s in report.systems] == [3.0, 8.0]
    assert report.comparisons[0].estimate == 5.0
