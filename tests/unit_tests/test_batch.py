"""Batch generation over a scripted OpenAI-compatible server: faults, accounting, rates, resume."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from moa_graph import MoAContext, ModelSpec
from moa_graph.batch import BatchRunner, StopRule, abatch_generate, batch_generate
from moa_graph.batch.rows import Fields, read_rows
from moa_graph.cli import main
from tests.scripted_openai_server import (
    Fault,
    ScriptedOpenAIServer,
    ToolCall,
    faulty,
    forced_call,
)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


def context_for(server: ScriptedOpenAIServer, **settings) -> MoAContext:
    spec = {"model": "openai:m", "model_kwargs": {"base_url": server.url}}
    return MoAContext(
        proposers=[ModelSpec(**spec, n=3)],
        aggregator=ModelSpec(model="openai:agg", model_kwargs={"base_url": server.url}),
        **settings,
    )


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    scripted = ScriptedOpenAIServer(lambda body: "The answer is 42.").start()
    yield scripted
    scripted.stop()


async def test_tokens_add_up_to_what_the_server_counted_and_cost_is_tokens_times_price(
    key, server: ScriptedOpenAIServer
) -> None:
    prices = {
        "openai:m": {"input": 1.0, "output": 2.0},
        "openai:agg": {"input": 3.0, "output": 4.0},
    }
    records = [
        r async for r in abatch_generate(
            ["a?", "b?", "c?"], context=context_for(server), samples=2, prices=prices
        )
    ]  # fmt: skip
    assert len(records) == 6
    totals = {"input_tokens": 0, "output_tokens": 0}
    for record in records:
        for name in totals:
            totals[name] += record["usage"][name]
        by_model = record["usage_by_model"]
        assert by_model["openai:m"] == {"input_tokens": 33, "output_tokens": 21}  # 3 calls
        expected = (33 * 1.0 + 21 * 2.0 + 11 * 3.0 + 7 * 4.0) / 1e6
        assert record["cost_usd"] == pytest.approx(expected)
    assert totals == server.usage


async def test_cost_is_unknown_when_a_model_has_no_price(key, server) -> None:
    [record] = [r async for r in abatch_generate(
        ["a?"], context=context_for(server), prices={"openai:m": {"input": 1, "output": 1}}
    )]  # fmt: skip
    assert record["status"] == "ok" and record["usage_by_model"]["openai:agg"]  # a real run
    assert record["cost_usd"] is None  # openai:agg has no price


def test_rows_of_every_kind_and_sorted_sync_results(key, server) -> None:
    rows = [
        "plain prompt",
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        {"id": "x7", "question": "q?", "topic": "t"},
        {"prompt": ""},
    ]
    records = batch_generate(rows, context=context_for(server), samples=2, concurrency=3)
    assert [(r["row"], r["sample"]) for r in records] == [(i, s) for i in range(4) for s in (0, 1)]
    assert records[0]["prompt"] == "plain prompt"
    assert records[2]["messages"][0]["role"] == "system"
    assert records[4]["id"] == "x7" and records[4]["topic"] == "t"
    assert [r["status"] for r in records[6:]] == ["error", "error"]
    assert "has no prompt" in records[6]["error"]["message"]
    assert records[0]["proposals"][0]["seed"] != records[1]["proposals"][0]["seed"]


async def test_input_is_read_lazily(key, server) -> None:
    taken = []

    def rows():
        for i in range(100_000):
            taken.append(i)
            yield f"q{i}"

    stream = abatch_generate(rows(), context=context_for(server), concurrency=4)
    first = await anext(stream)
    await stream.aclose()
    assert first["status"] == "ok" and len(taken) < 50


async def test_resume_skips_done_rows_and_a_finished_batch_makes_no_calls(
    key, server, tmp_path: Path
) -> None:
    output = str(tmp_path / "out.jsonl")
    context = context_for(server)
    rows = [f"q{i}" for i in range(10)]
    first = [r async for r in abatch_generate(rows[:6], context=context, output=output)]
    calls = len(server.requests)
    runner = BatchRunner(context=context, output=output)
    second = [r async for r in runner.run(_rows(rows))]
    assert len(first) == 6 and len(second) == 4 and runner.stats.skipped == 6
    assert len(server.requests) == calls + 4 * 4
    third = BatchRunner(context=context, output=output)
    assert [r async for r in third.run(_rows(rows))] == []
    assert len(server.requests) == calls + 16
    lines = Path(output).read_text().splitlines()
    assert sorted(json.loads(line)["row"] for line in lines) == list(range(10))


async def test_a_torn_last_line_is_dropped_and_redone(key, server, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    context = context_for(server)
    [r async for r in abatch_generate(["a", "b"], context=context, output=str(output))]
    output.write_text(output.read_text() + '{"id": "2", "row": 2, "sta')
    records = [r async for r in abatch_generate(["a", "b", "c"], context=context,
                                                output=str(output))]  # fmt: skip
    assert [r["row"] for r in records] == [2]
    rows = [json.loads(line)["row"] for line in output.read_text().splitlines()]
    assert sorted(rows) == [0, 1, 2] and rows[-1] == 2  # the torn row 2 was redone, once


async def test_changed_settings_never_reuse_rows(key, server, tmp_path: Path) -> None:
    from moa_graph import MoAConfigError
    from moa_graph.batch.store import RecordStore

    output = str(tmp_path / "out.jsonl")
    runner = BatchRunner(context=context_for(server), output=output)
    [r async for r in runner.run(_rows(["a"]))]
    RecordStore(output).write_manifest(
        {"settings_hash": runner.settings_hash, "settings": runner.settings}
    )
    with pytest.raises(MoAConfigError, match=r"made with other settings \(temperature differ"):
        BatchRunner(context=context_for(server, temperature=0.1), output=output)
    # Limits change how calls are made, not their answers: the rows are reused.
    same = BatchRunner(context=context_for(server, rpm={"openai": 6000}), output=output)
    assert [r async for r in same.run(_rows(["a"]))] == []


async def test_stop_rule_ends_the_batch_early(key, tmp_path: Path) -> None:
    server = ScriptedOpenAIServer(faulty(server_errors=1.0, rate_limits=0, hangs=0, hang_s=0))
    server.start()
    try:
        runner = BatchRunner(
            context=context_for(server, retries=0), concurrency=2, stop=StopRule(max_failures=2)
        )
        records = [r async for r in runner.run(_rows([f"q{i}" for i in range(50)]))]
    finally:
        server.stop()
    assert runner.stats.stopped == "3 failures" and len(records) == 3
    assert all(r["error"]["type"] == "ProposerQuorumError" for r in records)
    assert records[0]["error"]["layer"] == 1 and len(records[0]["proposals"]) == 3


def test_cli_batch_from_csv_to_parquet_and_json_summary(
    key, server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    source = tmp_path / "rows.csv"
    source.write_text("id,instruction,lang\nr1,Say hi.,en\nr2,Say bye.,fr\n")
    context = tmp_path / "ctx.json"
    context.write_text(json.dumps({
        "proposers": [{"model": "openai:m", "model_kwargs": {"base_url": server.url}}],
        "aggregator": {"model": "openai:agg", "model_kwargs": {"base_url": server.url}},
    }))  # fmt: skip
    output = tmp_path / "out.parquet"
    argv = ["batch", str(source), "-o", str(output), "--context", str(context), "--no-progress"]
    assert main(argv) == 0
    table = pq.read_table(output).to_pylist()
    assert sorted((r["id"], r["lang"], r["status"]) for r in table) == [
        ("r1", "en", "ok"), ("r2", "fr", "ok"),
    ]  # fmt: skip
    manifest = json.loads(Path(f"{output}.manifest.json").read_text())
    assert manifest["records"] == {"ok": 2, "error": 0} and manifest["versions"]["langgraph"]
    assert "2 ok, 0 failed" in capsys.readouterr().err
    assert main([*argv, "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["rows"], plan["calls"], plan["cost_usd_at_most"]) == (2, 4, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--shard", "3/2"], "--shard '3/2'"),
        (["--rpm", "openai"], "write it as SPEC=N"),
        (["--max-failures", "lots"], "give a count"),
    ],
)
def test_cli_batch_bad_options_exit_2(tmp_path, capsys, options, message) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text('{"prompt": "hi"}\n')
    assert main(["batch", str(source), "-o", str(tmp_path / "o.jsonl"), *options]) == 2
    assert message in capsys.readouterr().err


def test_read_rows_by_field_names(tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text(
        '{"key": "k1", "text": "one"}\n'
        "not json\n"
        '{"key": "k3", "chat": [{"role": "user", "content": "three"}]}\n'
    )
    rows = list(read_rows(source, Fields(prompt="text", id="key")))
    assert (rows[0].id, rows[0].prompt) == ("k1", "one")
    assert rows[1].error.startswith("row 1 (line 2) is not JSON")
    chats = list(read_rows(source, Fields(messages="chat", id="key")))
    assert chats[2].messages == [{"role": "user", "content": "three"}]


async def test_an_executor_that_raises_ends_the_batch_with_its_error_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    # A worker that raised used to leave the batch waiting for its end mark forever.
    from moa_graph import build_moa_graph
    from moa_graph.batch.runner import LocalPairs
    from tests.fakes import ScriptedChatModel

    class Breaks(LocalPairs):
        async def run(self, row, sample, key):
            if row.prompt == "q3":
                raise RuntimeError("executor bug")
            return await super().run(row, sample, key)

    graph = build_moa_graph(proposers=[ScriptedChatModel()], aggregator=ScriptedChatModel())
    context, output = MoAContext(), tmp_path / "out.jsonl"
    runner = BatchRunner(context=context, concurrency=2, output=str(output),
                         executor=Breaks(graph.compile(), context))  # fmt: skip
    seen = []
    with pytest.raises(RuntimeError, match="executor bug"):
        async with asyncio.timeout(30):
            async for record in runner.run(_rows([f"q{i}" for i in range(10)])):
                seen.append(record["prompt"])
    assert sorted(seen) == sorted(f"q{i}" for i in range(10) if i != 3)
    assert len(output.read_text().splitlines()) == 9  # the other rows' records were kept


async def test_a_run_that_ends_without_an_answer_is_that_rows_error_record() -> None:
    from langgraph.graph import START, MessagesState, StateGraph

    from moa_graph.batch.records import run_pair
    from moa_graph.batch.rows import row_or_error

    builder = StateGraph(MessagesState)
    builder.add_node("noop", lambda state: {})
    builder.add_edge(START, "noop")
    row = row_or_error(0, "q")
    record = await run_pair(builder.compile(), MoAContext(), None, row, 0, "0" * 32)
    assert record["status"] == "error" and record["error"]["type"] == "KeyError"


async def _rows(items):
    from moa_graph.batch.rows import row_or_error

    for index, item in enumerate(items):
        yield row_or_error(index, item)


def test_retry_failed_after_an_outage_makes_real_calls_and_ends_all_ok(
    key, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outage = {"on": True}
    server = ScriptedOpenAIServer(
        lambda body: Fault(503) if outage["on"] and body["model"] == "m" else "The answer is 42."
    ).start()
    try:
        source = tmp_path / "rows.jsonl"
        source.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"q{i}"}) + "\n"
                                  for i in range(4)))  # fmt: skip
        context = tmp_path / "ctx.json"
        context.write_text(json.dumps({
            "proposers": [{"model": "openai:m", "n": 3, "model_kwargs": {"base_url": server.url}}],
            "aggregator": {"model": "openai:agg", "model_kwargs": {"base_url": server.url}},
            "retries": 0,
        }))  # fmt: skip
        output = tmp_path / "out.jsonl"
        argv = ["batch", str(source), "-o", str(output), "--context", str(context),
                "--no-progress"]  # fmt: skip
        assert main(argv) == 1  # every row failed: its proposers got 503
        outage["on"] = False  # the provider recovers
        before = sum(body["model"] == "m" for body in server.requests)
        assert main([*argv, "--retry-failed"]) == 0
    finally:
        server.stop()
    assert sum(body["model"] == "m" for body in server.requests) == before + 4 * 3
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["r0", "r1", "r2", "r3"]  # no duplicates
    assert all(r["status"] == "ok" for r in records)
    assert "4 ok, 0 failed" in capsys.readouterr().err


QA_MODEL = '''
from pydantic import BaseModel


class QA(BaseModel):
    """A question about a topic and its answer."""

    question: str
    answer: str
'''


def test_typed_rows_with_a_model_and_a_misfit_redone_by_retry_failed(
    key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    misfit = {"on": True}

    def script(body: dict) -> "str | ToolCall":
        if not body.get("tools"):
            return "proposal"
        if misfit["on"] and "volcanoes" in json.dumps(body["messages"]):
            return ToolCall("QA", {"question": 1})  # no answer, and a number for a string
        return forced_call(body)

    server = ScriptedOpenAIServer(script).start()
    (tmp_path / "schemas.py").write_text(QA_MODEL)
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"id": t, "prompt": f"Write a quiz item about {t}."})
                              + "\n" for t in ("rivers", "volcanoes", "stars")))  # fmt: skip
    context = tmp_path / "ctx.json"
    context.write_text(json.dumps({
        "proposers": [{"model": "openai:m", "n": 2, "model_kwargs": {"base_url": server.url}}],
        "aggregator": {"model": "openai:agg", "model_kwargs": {"base_url": server.url}},
    }))  # fmt: skip
    output = tmp_path / "out.parquet"
    argv = ["batch", str(source), "-o", str(output), "--context", str(context), "--no-progress",
            "--schema", "schemas:QA"]  # fmt: skip
    try:
        assert main(argv) == 1
        journal = [json.loads(line) for line in Path(f"{output}.jsonl").read_text().splitlines()]
        [bad] = [r for r in journal if r["status"] == "error"]
        assert bad["id"] == "volcanoes" and bad["error"]["type"] == "AnswerDoesNotFit"
        assert "does not fit QA" in bad["error"]["message"] and len(bad["proposals"]) == 2
        misfit["on"] = False
        assert main([*argv, "--retry-failed"]) == 0
    finally:
        server.stop()
    table = {r["id"]: r for r in pq.read_table(output).to_pylist()}
    assert {r["status"] for r in table.values()} == {"ok"}
    volcanoes = table["volcanoes"]
    assert (
        volcanoes["answer.question"]
        == volcanoes["answer.answer"]
        == ("Write a quiz item about volcanoes.")
    )
    assert "1 ok, 0 failed, 2 already done" in capsys.readouterr().err


async def test_a_json_schema_types_the_rows_through_the_python_api(key, tmp_path: Path) -> None:
    server = ScriptedOpenAIServer(lambda b: forced_call(b) if b.get("tools") else "p").start()
    schema = {"title": "Pair", "type": "object", "required": ["a", "b"],
              "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}  # fmt: skip
    try:
        records = [r async for r in abatch_generate(
            ["Pair 3 with 4.", "Pair 5 with 6."], context=context_for(server), schema=schema,
        )]  # fmt: skip
    finally:
        server.stop()
    assert sorted(r["answer"]["a"] for r in records) == [3, 5]
    assert all(r["status"] == "ok" and "tool_calls" not in r for r in records)
    tool = server.requests[-1]["tools"][0]["function"]
    assert tool["name"] == "Pair" and tool["parameters"] == schema


def test_rows_answered_by_a_shrunken_panel_are_counted(
    key, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ScriptedOpenAIServer(lambda b: Fault(400) if b["model"] == "down" else "ok").start()
    source = tmp_path / "rows.jsonl"
    source.write_text('{"prompt": "a?"}\n{"prompt": "b?"}\n')
    context = tmp_path / "ctx.json"
    spec = {"model_kwargs": {"base_url": server.url}}
    context.write_text(json.dumps({
        "proposers": [{"model": "openai:m", **spec}, {"model": "openai:down", **spec}],
        "aggregator": {"model": "openai:agg", **spec}, "retries": 0,
    }))  # fmt: skip
    argv = ["batch", str(source), "-o", str(tmp_path / "o.jsonl"), "--context", str(context),
            "--no-progress"]  # fmt: skip
    try:
        assert main(argv) == 0
    finally:
        server.stop()
    assert "2 ok (2 from fewer proposals than asked), 0 failed" in capsys.readouterr().err
