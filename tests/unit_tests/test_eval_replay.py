"""Votes and cascades replayed from recorded samples, checked against the same systems run for
real over a scripted OpenAI-compatible server."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from moa_graph import MoAConfigError
from moa_graph.cli import main
from moa_graph.eval import arun_eval
from moa_graph.eval.markdown import render
from moa_graph.eval.replay import Replay
from tests.scripted_openai_server import Script, ScriptedOpenAIServer


def script(body: dict[str, Any]) -> str:
    """Every sample agrees on "agree" prompts; on the others each seed says its own number."""
    question = body["messages"][-1]["content"]
    return "It is 42." if "agree" in question else f"It is {body['seed']}."


@pytest.fixture
def server(openai_upstream: Callable[[Script], ScriptedOpenAIServer]) -> ScriptedOpenAIServer:
    return openai_upstream(script)


@pytest.fixture
def suite(tmp_path: Path) -> str:
    rows = [{"prompt": f"{'agree' if i % 2 else 'split'} {i}", "reference": 42} for i in range(6)]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"jsonl:{path}"


def systems_file(tmp_path: Path) -> str:
    path = tmp_path / "systems.json"
    path.write_text(json.dumps({
        "vote-5": {"aggregator_mode": "vote", "proposers": ["openai:s n=5"]},
        "cascade": {"aggregator_mode": "vote", "proposers": ["openai:s n=5"],
                    "cascade": ["openai:s n=2"]},
    }))  # fmt: skip
    return f"json:{path}"


async def test_replays_match_the_systems_run_for_real(server, suite, tmp_path: Path) -> None:
    report = await arun_eval(
        suite, [systems_file(tmp_path)], replays=["vote:5", "cascade:2:5", "vote:3"]
    )
    rows = {name: {} for name in (s.name for s in report.systems)}
    for r in report.records:
        rows[r["system"]][r["item"]] = r
    # The vote of all 5 recorded samples is the vote that recorded them.
    for item, real in rows["vote-5"].items():
        replayed = rows["replay:vote:5"][item]
        assert (replayed["answer"], replayed["tokens"], replayed["calls"]) == (
            real["answer"], real["tokens"], real["calls"],
        )  # fmt: skip
    # The replayed cascade takes the path the real one took, at the real one's calls: 2 when
    # the first stage agrees, else 5 (the first stage's 2 answers are reused, 3 more asked).
    for item, real in rows["cascade"].items():
        replayed = rows["replay:cascade:2:5"][item]
        assert replayed["escalated"] == real["escalated"] == (int(item) % 2 == 0)  # "split"
        assert replayed["calls"] == real["calls"] == (5 if real["escalated"] else 2)
        assert replayed["tokens"] == real["tokens"]
    assert [r["calls"] for r in rows["replay:vote:3"].values()] == [3] * 6
    assert report.comparisons[0].baseline == "vote-5"
    by_name = {s.name: s for s in report.systems}
    assert by_name["replay:cascade:2:5"].escalation_rate == 0.5
    assert by_name["replay:vote:3"].latency_p50_s is None  # a replay takes no time
    assert "replay:cascade:2:5, replay:vote:3: every item was replayed" in render(report)


async def test_replays_are_checked_before_any_call(server, suite, tmp_path: Path) -> None:
    with pytest.raises(MoAConfigError, match="no system records the samples"):
        await arun_eval(suite, [systems_file(tmp_path)], replays=["vote:9"])
    with pytest.raises(MoAConfigError, match="replay_from='cascade'"):
        await arun_eval(suite, [systems_file(tmp_path)], replays=["vote:3"], replay_from="cascade")
    for text in ("cascade:4:3", "vote:0", "cascade:1:3:1.5", "majority:3"):
        with pytest.raises(MoAConfigError, match="replay"):
            Replay.parse(text)
    assert server.requests == []


def test_the_cli_prints_replayed_rows(server, suite, tmp_path: Path, capsys) -> None:
    status = main(
        ["eval", "--suite", suite, "--systems", systems_file(tmp_path), "--replay",
         "cascade:1:5", "--no-progress"]
    )  # fmt: skip
    table = capsys.readouterr().out
    assert status == 0
    row = next(line for line in table.splitlines() if line.startswith("| replay:cascade:1:5 "))
    assert row.endswith("| - | - |")  # no latency


async def test_a_replay_can_be_the_baseline(server, suite, tmp_path: Path) -> None:
    report = await arun_eval(
        suite, [systems_file(tmp_path)], replays=["vote:3"], baseline="replay:vote:3"
    )
    assert [c.system for c in report.comparisons] == ["vote-5", "cascade"]
    assert {c.baseline for c in report.comparisons} == {"replay:vote:3"}
