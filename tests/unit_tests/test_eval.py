"""`moa-graph eval` over a scripted OpenAI-compatible server: systems, judges, files, resume.

The systems and the judge are real spec-built models talking HTTP to a scripted server, so
what is asserted is what the evaluation sends and computes, never which system is better.
"""

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from moa_graph import MoAConfigError, MoAContext, build_moa_graph
from moa_graph.cli import main
from moa_graph.eval import arun_eval, load_suite, write_artifacts
from moa_graph.eval.experiment import log_experiments
from moa_graph.eval.panel import achoose_panel, describe, greedy_panel
from moa_graph.eval.suites import CALCULATE, OPERATIONS, call_match
from moa_graph.eval.systems import parse_systems
from tests.scripted_openai_server import Fault, ScriptedOpenAIServer, ToolCall

A, B = "single:openai:a", "single:openai:b"


def _system_answer(body: dict[str, Any]) -> str:
    """Model a says "good <n+1>", model b says "bad <n>", for a question about number n."""
    question = body["messages"][-1]["content"]
    number = int(re.findall(r"\d+", question)[-1]) if re.findall(r"\d+", question) else 0
    return f"good {number + 1}" if body["model"] == "a" else f"bad {number}"


def _fair_judge(body: dict[str, Any]) -> str:
    """Prefers the answer with "good"; rates "good" answers 8 and others 3."""
    prompt = body["messages"][-1]["content"]
    if "[[rating]]" in prompt:
        answer = prompt.split("Answer]\n")[-1]
        return "Rating: [[8]]" if "good" in answer else "Rating: [[3]]"
    first = prompt.split("Assistant A")[1]
    return "[[A]]" if "good" in first.split("Assistant B")[0] else "[[B]]"


def scripted(judge: Any = _fair_judge) -> ScriptedOpenAIServer:
    def script(body: dict[str, Any]) -> str:
        return judge(body) if body["model"] == "judge" else _system_answer(body)

    return ScriptedOpenAIServer(script)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedOpenAIServer]:
    running = scripted().start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", running.url)
    yield running
    running.stop()


def jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"jsonl:{path}"


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


def test_systems_presets_singles_best_single_and_files(tmp_path: Path) -> None:
    base = {"proposers": ["openai:a", "openai:b", "openai:a"], "aggregator": "openai:c"}
    named = tmp_path / "systems.json"
    named.write_text(json.dumps({"mine": {"preset": "usc", "rounds": 2}, "raw": {"rounds": 3}}))
    systems, best = parse_systems(
        ["self-moa", "single:openai:a temperature=0.7", "best-single", f"json:{named}"], base
    )
    by_name = {s.name: s for s in systems}
    assert best
    assert list(by_name) == [
        "self-moa", "single:openai:a temperature=0.7", "single:openai:a", "single:openai:b",
        "mine", "raw",
    ]  # fmt: skip
    [self_moa] = by_name["self-moa"].context.proposer_specs(1)
    assert (self_moa.model, self_moa.n) == ("openai:a", 6)  # the first proposer, k = 6
    sampled = by_name["single:openai:a temperature=0.7"]
    assert sampled.single and sampled.context.proposer_specs(1)[0].temperature == 0.7
    assert by_name["single:openai:b"].context.proposer_specs(1)[0].temperature == 0.0
    assert by_name["mine"].context.aggregator_mode == "select"
    assert by_name["mine"].context.rounds == 2 and by_name["raw"].context.rounds == 3
    for names, message in [
        (["nope"], "system 'nope' is unknown"),
        (["vote", "vote"], "named twice"),
        (["single:openai:a n=3"], "for samples use self-moa or vote"),
        ([f"json:{tmp_path / 'none.json'}"], "cannot read"),
    ]:
        with pytest.raises(MoAConfigError, match=re.escape(message)):
            parse_systems(names, base)


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
    assert (out / "summary.md").read_text() == report.to_markdown()
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    calls = len(server.requests)
    again = await arun_eval(suite, [B, A], judge="openai:judge", out=out)
    assert len(server.requests) == calls  # answers resumed, judgments cached
    assert again.summary() == report.summary()


def test_cli_prints_the_table_and_exports_alpaca_eval_files(
    server: ScriptedOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = jsonl(
        tmp_path / "s.jsonl", [{"prompt": f"q {i}", "reference": i + 1} for i in range(3)]
    )
    out = tmp_path / "out"
    status = main(
        ["eval", "--suite", suite, "--systems", f"{B},{A}", "--out", str(out), "--no-progress",
         "--alpaca-export", "--no-plot"]
    )  # fmt: skip
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert f"| {A} | 1.000 (3/3) |" in printed.out
    assert "McNemar p" in printed.out
    exported = json.loads((out / "alpaca_eval" / "single_openai_a.json").read_text())
    assert exported[0] == {
        "instruction": "q 0", "output": "good 1", "generator": A, "dataset": suite,
    }  # fmt: skip
    assert not (out / "plot.png").exists()
    assert main(["eval", "--suite", suite, "--systems", "nope"]) == 2
    assert "system 'nope' is unknown" in capsys.readouterr().err


async def test_langsmith_experiments_run_offline_without_a_network_call(
    server: ScriptedOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = jsonl(
        tmp_path / "s.jsonl", [{"prompt": f"q {i}", "reference": i + 1} for i in range(3)]
    )
    report = await arun_eval(suite, [B, A])
    connections: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        connections.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    logged = await log_experiments(report)
    assert connections == []
    assert sorted(logged) == [A, B]
    assert sorted((row["item"], row["score"]) for row in logged[A]) == [
        ("0", 1.0), ("1", 1.0), ("2", 1.0),
    ]  # fmt: skip
    assert {row["score"] for row in logged[B]} == {0.0}


def test_cli_exits_1_when_a_system_answers_nothing(
    server: ScriptedOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": "q 1", "reference": 2}])
    broken = "single:openai:a base_url=http://127.0.0.1:9/v1"
    status = main(["eval", "--suite", suite, "--systems", f"{A},{broken}", "--retries", "0",
                   "--no-progress"])  # fmt: skip
    printed = capsys.readouterr()
    assert status == 1
    assert f"{broken} answered no item; the first error: " in printed.err
    assert "| 1.000 (1/1) |" in printed.out  # the table is still printed


async def test_missing_credentials_stop_the_run_before_any_call(
    server: ScriptedOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": "q 1", "reference": 2}])
    with pytest.raises(MoAConfigError, match=r"system 'single:openai:a'.*OPENAI_API_KEY"):
        await arun_eval(suite, [A])
    assert server.requests == []


def test_best_single_runs_each_proposer_as_configured_once_and_greedy() -> None:
    role = {"model": "openai:a", "n": 3, "temperature": 1.0, "system_prompt": "Be brief.",
            "label": "brief-a", "max_tokens": 50}  # fmt: skip
    systems, best = parse_systems(["best-single", "vote"], {"proposers": [role, "openai:b"]})
    assert best and [s.name for s in systems] == ["single:brief-a", "single:openai:b", "vote"]
    [alone] = systems[0].context.proposer_specs(1)
    assert (alone.n, alone.temperature, alone.system_prompt, alone.max_tokens) == (
        1, 0.0, "Be brief.", 50,
    )  # fmt: skip


async def test_a_rerun_after_an_outage_redoes_the_failed_items_with_real_calls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outage = {"on": True}

    def script(body: dict[str, Any]) -> "str | Fault":
        return Fault(503) if outage["on"] else _system_answer(body)

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
    assert "9 distinct items" in repeated.to_markdown()


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
        return _system_answer(body)

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


def test_call_match() -> None:
    reference = json.dumps([{"name": "calculate", "args": {"op": "*", "a": 17, "b": 4}}])
    assert call_match(reference, '[{"name": "calculate", "args": {"a": 17.0, "b": 4, "op": "*"}}]')
    assert not call_match(
        reference, '[{"name": "calculate", "args": {"a": 17, "b": 4, "op": "+"}}]'
    )
    assert not call_match(reference, "17 * 4 = 68")
    with pytest.raises(MoAConfigError, match="n <= 32400"):
        load_suite("tool-calls", n=40_000)


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
    assert "splits: the cascade escalated to the MoA on 100% of the items" in report.to_markdown()


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
