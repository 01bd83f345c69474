"""Running an evaluation over a scripted OpenAI-compatible server: scores, files, resume.

The systems are real spec-built models talking HTTP to a scripted server, so what is asserted
is what the evaluation sends and computes, never which system is better."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from moa_graph import MoAConfigError, MoAContext, build_moa_graph
from moa_graph.cli import main
from moa_graph.eval import arun_eval, load_suite, write_artifacts
from moa_graph.eval.markdown import render
from moa_graph.eval.suites import CALCULATE, OPERATIONS
from tests.eval_scripted import (
    A,
    B,
    jsonl,
    system_answer,
)
from tests.scripted_openai_server import Fault, ScriptedOpenAIServer, ToolCall


async def test_exact_suite_scores_every_item_with_tokens_and_calls(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    # references n+1: model a is always right, model b never.
    suite = jsonl(
        tmp_path / "s.jsonl", [{"prompt": f"q {i}", "reference": i + 1} for i in range(8)]
    )
    prices = {"openai:a": {"input": 1.0, "output": 2.0}, "openai:b": {"input": 1.0, "output": 2.0}}
    report = await arun_eval(
        suite, [B, A, "vote"], settings={"proposers": ["openai:a"] * 3}, prices=prices
    )
    b, a, vote = report.systems
    assert b.cost_per_item == pytest.approx((11 * 1.0 + 7 * 2.0) / 1e6)  # per call, per M tokens
    assert vote.cost_per_item == pytest.approx(3 * (11 * 1.0 + 7 * 2.0) / 1e6)
    assert (b.correct, a.correct, vote.correct) == (0, 8, 8)
    assert (b.calls_per_item, vote.calls_per_item) == (1, 3)
    assert b.tokens_per_item == 18 and vote.tokens_per_item == 54  # the server's 11 + 7 a call
    assert len(report.records) == 24 and all(r["latency_s"] > 0 for r in report.records)
    comparison = report.comparisons[0]
    assert (comparison.system, comparison.baseline) == (A, B)
    assert comparison.estimate == 1.0 and comparison.p_value == pytest.approx(2 / 2**8)
    assert comparison.verdict == "better"
    assert server.answered == 8 * 5
    # single models are greedy; temperature is sent as 0
    assert {body["temperature"] for body in server.requests if body["model"] == "b"} == {0.0}


async def test_second_turn_sees_the_first_answer_as_a_thread_would(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    suite = jsonl(tmp_path / "s.jsonl", [{"id": "x", "turns": ["q 1", "q 5"]}])
    report = await arun_eval(suite, [A, B], judge="openai:judge")
    turn_two = [b["messages"] for b in server.requests if b["model"] == "a"][1]
    assert [m["content"] for m in turn_two] == ["q 1", "good 2", "q 5"]
    judged = [b for b in server.requests if b["model"] == "judge"]
    prompts = [b["messages"][-1]["content"] for b in judged]
    assert len(judged) == 4
    assert sum("### Assistant A:\ngood 6" in p for p in prompts) == 1  # turn 2, both orders
    assert sum("### Assistant B:\ngood 6" in p for p in prompts) == 1
    assert report.records[0]["turns"][1]["answer"] == "good 6"

    # The same conversation through a LangGraph thread (a checkpointer, two invokes).
    server.requests.clear()
    graph = build_moa_graph().compile(checkpointer=InMemorySaver())
    context = MoAContext(proposers=["openai:a"], aggregator_mode="vote")
    config = {"configurable": {"thread_id": "t"}}
    for text in ("q 1", "q 5"):
        await graph.ainvoke({"messages": [HumanMessage(text)]}, config, context=context)
    assert [m["content"] for m in server.requests[1]["messages"]] == ["q 1", "good 2", "q 5"]


async def test_bad_settings_are_refused_before_any_call(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    judged = jsonl(tmp_path / "s.jsonl", [{"prompt": "q 1"}])
    with pytest.raises(MoAConfigError, match="give a judge model"):
        await arun_eval(judged, [A, B])
    with pytest.raises(MoAConfigError, match="baseline='c' is not among"):
        await arun_eval(judged, [A, B], judge="openai:judge", baseline="c")
    with pytest.raises(MoAConfigError, match="needs two systems"):
        await arun_eval(judged, [A], judge="openai:judge")
    assert server.requests == []


async def test_files_are_written_readable_and_a_rerun_makes_no_call(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": f"q {i}"} for i in range(4)])
    out = tmp_path / "out"
    report = await arun_eval(suite, [B, A], judge="openai:judge", out=out)
    paths = write_artifacts(report, out)
    assert [p.name for p in paths] == ["results.json", "items.jsonl", "summary.md", "plot.png"]
    results = json.loads((out / "results.json").read_text())
    assert results["summary"]["comparisons"][0]["estimate"] == 1.0
    assert results["settings"]["systems"][A]["proposers"][0]["temperature"] == 0.0
    assert results["items"][1]["judgments"][0]["text"] == "[[A]]"
    lines = (out / "items.jsonl").read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[0])["item"] == "0"
    assert (out / "summary.md").read_text() == render(report)
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    calls = len(server.requests)
    again = await arun_eval(suite, [B, A], judge="openai:judge", out=out)
    assert len(server.requests) == calls  # answers resumed, judgments cached
    assert again.summary() == report.summary()


async def test_missing_credentials_stop_the_run_before_any_call(
    server: ScriptedOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": "q 1", "reference": 2}])
    with pytest.raises(MoAConfigError, match=r"system 'single:openai:a'.*OPENAI_API_KEY"):
        await arun_eval(suite, [A])
    assert server.requests == []


async def test_a_rerun_after_an_outage_redoes_the_failed_items_with_real_calls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outage = {"on": True}

    def script(body: dict[str, Any]) -> "str | Fault":
        return Fault(503) if outage["on"] else system_answer(body)

    server = ScriptedOpenAIServer(script).start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": f"q {i}", "reference": i + 1}
                                         for i in range(5)])  # fmt: skip
    try:
        failed = await arun_eval(suite, [A], settings={"retries": 0}, out=tmp_path / "out")
        assert failed.systems[0].failures == 5
        outage["on"] = False
        calls = len(server.requests)
        recovered = await arun_eval(suite, [A], settings={"retries": 0}, out=tmp_path / "out")
    finally:
        server.stop()
    assert len(server.requests) == calls + 5  # one real call per item, none replayed
    assert (recovered.systems[0].failures, recovered.systems[0].correct) == (0, 5)


async def test_repeated_prompts_are_scored_once(server, tmp_path: Path) -> None:
    rows = [{"prompt": f"q {i}", "reference": i + 1 if i % 3 else 0} for i in range(9)]
    once = await arun_eval(jsonl(tmp_path / "once.jsonl", rows), [A])
    thrice = [{**row, "id": f"{row['prompt']}#{k}"} for row in rows for k in range(3)]
    repeated = await arun_eval(jsonl(tmp_path / "thrice.jsonl", thrice), [A])
    assert (once.items, repeated.items, repeated.repeated) == (9, 9, 18)
    a, b = once.systems[0], repeated.systems[0]
    assert (
        (a.correct, a.n, a.low, a.high) == (b.correct, b.n, b.low, b.high) == (6, 9, a.low, a.high)
    )
    assert any("18 items repeated" in note for note in repeated.notes)
    assert "9 distinct items" in render(repeated)


async def test_all_right_gives_an_interval_that_contains_1_and_a_plot(server, tmp_path) -> None:
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": f"q {i}", "reference": i + 1}
                                         for i in range(30)])  # fmt: skip
    report = await arun_eval(suite, [A, B])
    right = report.systems[0]
    assert right.quality == 1.0 and right.low < 1.0 and right.high == 1.0
    paths = write_artifacts(report, tmp_path / "out")
    assert (tmp_path / "out" / "plot.png") in paths


def test_a_plot_that_fails_does_not_fail_the_written_results(server, tmp_path, monkeypatch):
    import moa_graph.eval.artifacts as artifacts

    def broken(report: Any, path: Path) -> Path:
        raise ValueError("'xerr' must not contain negative values")

    monkeypatch.setattr(artifacts, "write_plot", broken)
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": "q 1", "reference": 2}])
    assert main(["eval", "--suite", suite, "--systems", A, "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "results.json").is_file()
    assert not (tmp_path / "o" / "plot.png").exists()


async def test_items_answered_from_the_cache_have_no_latency(monkeypatch, tmp_path) -> None:
    outage = {"on": True}

    def script(body: dict[str, Any]) -> "str | Fault":
        if body["model"] == "agg":
            return Fault(503) if outage["on"] else "good 2"
        return system_answer(body)

    server = ScriptedOpenAIServer(script).start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": "q 1", "reference": 2}])
    settings = {"proposers": ["openai:a", "openai:a"], "aggregator": "openai:agg", "retries": 0}
    try:
        await arun_eval(suite, ["moa-lite"], settings=settings, out=tmp_path / "out")
        outage["on"] = False
        proposer_calls = sum(b["model"] == "a" for b in server.requests)
        report = await arun_eval(suite, ["moa-lite"], settings=settings, out=tmp_path / "out")
    finally:
        server.stop()
    assert sum(b["model"] == "a" for b in server.requests) == proposer_calls  # answers reused
    [record] = report.records
    assert record["ok"] and record["latency_s"] is None
    assert record["turns"][0]["latency_s"] > 0  # kept in the record, out of the figures
    assert any("answered partly from the cache" in note for note in report.notes)


async def test_single_systems_never_start_the_embedded_model(server, tmp_path, monkeypatch):
    import moa_graph.models

    def refuse(model: str) -> str:
        raise AssertionError(f"the embedded model {model} was started")

    monkeypatch.setattr(moa_graph.models, "local_base_url", refuse)
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": "q 1", "reference": 2}])
    report = await arun_eval(suite, [A, B])  # the default aggregator is local:smollm2
    assert [s.failures for s in report.systems] == [0, 0]


def _calculator(body: dict[str, Any]) -> "str | ToolCall":
    """Model a calls calculate with the question's operation, b always adds; text untooled."""
    if not body.get("tools"):
        return "no tools"
    a, word, b = re.fullmatch(
        r"What is (\d+) (.+) (\d+)\?", body["messages"][-1]["content"]
    ).groups()
    op = {v: k for k, v in OPERATIONS.items()}[word] if body["model"] == "a" else "+"
    return ToolCall("calculate", {"op": op, "a": int(a), "b": float(b)})


async def test_tool_call_suite_scores_the_calls_arguments(monkeypatch, tmp_path: Path) -> None:
    suite = load_suite("tool-calls", n=40)
    assert len({item.turns for item in suite.items}) == 40 and suite.tools == [CALCULATE]
    running = ScriptedOpenAIServer(_calculator).start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", running.url)
    try:
        panel = {"proposers": ["openai:a"] * 2 + ["openai:b"], "aggregator": "openai:agg"}
        report = await arun_eval("tool-calls", [A, B, "vote"], n=40, settings=panel)
    finally:
        running.stop()
    a, b, vote = report.systems
    adds = sum('"op": "+"' in (item.reference or "") for item in suite.items)
    assert (a.correct, b.correct, vote.correct) == (40, adds, 40)  # b's float 4.0 matches 4
    assert all(body["tool_choice"]["function"]["name"] == "calculate" for body in running.requests)
    assert all(body["model"] != "agg" for body in running.requests)  # a vote calls no aggregator
    record = next(r for r in report.records if r["system"] == A)
    assert json.loads(record["answer"]) == json.loads(record["reference"])


async def test_the_report_gives_each_cascades_escalation_rate(server, tmp_path: Path) -> None:
    suite = jsonl(
        tmp_path / "s.jsonl", [{"prompt": f"q {i}", "reference": i + 1} for i in range(4)]
    )
    systems = tmp_path / "systems.json"
    systems.write_text(json.dumps({
        "agrees": {"preset": "vote", "cascade": ["openai:a n=2"]},  # a says one thing twice
        "splits": {"preset": "vote", "cascade": ["openai:a", "openai:b"]},
    }))  # fmt: skip
    report = await arun_eval(
        suite, [A, f"json:{systems}"], settings={"proposers": ["openai:a"] * 3}
    )
    single, agrees, splits = report.systems
    assert (single.escalation_rate, agrees.escalation_rate, splits.escalation_rate) == (
        None, 0.0, 1.0,
    )  # fmt: skip
    # 2; then 2 + 2 voters: the first stage's answer of a stands for one of the 3 a voters
    assert (agrees.calls_per_item, splits.calls_per_item) == (2, 4)
    assert "splits: the cascade escalated to the MoA on 100% of the items" in render(report)


async def test_answers_cut_off_at_max_tokens_are_counted_per_system(monkeypatch, tmp_path) -> None:
    from tests.scripted_openai_server import CutOff

    def script(body: dict[str, Any]) -> Any:
        answer = system_answer(body)
        return CutOff(answer) if body["model"] == "a" else answer

    cut = ScriptedOpenAIServer(script).start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", cut.url)
    try:
        suite = jsonl(tmp_path / "s.jsonl", [{"prompt": f"q {i}", "reference": i + 1}
                                             for i in range(3)])  # fmt: skip
        report = await arun_eval(suite, [A, B])
    finally:
        cut.stop()
    by_name = {s.name: s for s in report.systems}
    assert (by_name[A].cut_off, by_name[B].cut_off) == (3, 0)
    assert "single:openai:a: 3 of 3 answers stopped at max_tokens" in render(report)
    assert all(r["cut_off"] == (r["system"] == A) for r in report.records)
