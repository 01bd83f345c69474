import json

import pytest

from moa_graph import ModelSpec, cli
from moa_graph.cli.main import parser
from moa_graph.cli.options import context_from
from tests.scripted_openai_server import Fault, ScriptedOpenAIServer


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ask", "hi", "--rounds", "0"], "rounds=0"),
        (["ask", "hi", "--proposer", "gpt-4o"], "is not a model spec"),
        (["ask", "   "], "the prompt is empty"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["ask"])
    assert exited.value.code == 2


def test_failed_run_exits_1(monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # An OpenAI-compatible server that is not there: the proposer fails, the quorum error ends
    # the run.
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    status = cli.main(["ask", "hi", "--json", "--proposer", "openai:any", "--aggregator",
                       "openai:any"])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 1
    assert "run failed: ProposerQuorumError: layer 1: 0 of 1 proposers answered" in captured.err
    assert "Failed: openai:any: " in captured.err and "ConnectionError" in captured.err
    with pytest.raises(json.JSONDecodeError):
        json.loads(captured.out or "x")


def test_context_file_preset_and_options_combine(tmp_path, monkeypatch) -> None:
    settings = tmp_path / "moa.json"
    settings.write_text(json.dumps({"proposers": [{"model": "openai:m", "n": 2}], "rounds": 3}))
    args = parser().parse_args(
        ["ask", "hi", "--context", str(settings), "--preset", "usc", "--rounds", "2",
         "--proposer", "openai:a n=2 temperature=0.1"]
    )  # fmt: skip
    ctx = context_from(args)
    assert ctx.aggregator_mode == "select" and ctx.rounds == 2  # the option beats the file
    assert ctx.proposer_specs(1)[0] == ModelSpec(model="openai:a", n=2, temperature=0.1)
    args = parser().parse_args(["ask", "hi", "--context", str(settings)])
    assert context_from(args).proposers[0].n == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "cannot read a JSON object"), ('{"round": 2}', "unknown settings ['round']")],
)
def test_bad_context_file_exits_2(tmp_path, capsys, content: str, message: str) -> None:
    settings = tmp_path / "moa.json"
    settings.write_text(content)
    assert cli.main(["ask", "hi", "--context", str(settings)]) == 2
    assert message in capsys.readouterr().err


def test_help_documents_the_compact_proposer_form(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["ask", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--proposer 'local:smollm2 n=3 temperature=1.0'" in out
    assert "usc: Universal Self-Consistency" in out and "--context FILE.json" in out


def test_an_answer_from_a_shrunken_panel_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ScriptedOpenAIServer(
        lambda body: Fault(400) if body["model"] == "down" else "an answer"
    ).start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    try:
        argv = ["ask", "hi", "--proposer", "openai:up", "--proposer", "openai:down",
                "--aggregator", "openai:agg"]  # fmt: skip
        assert cli.main(argv) == 0
        assert "warning: the answer was made from 1 of 2 proposals" in capsys.readouterr().err
        assert cli.main([*argv, "--json"]) == 0
    finally:
        server.stop()
    summary = json.loads(capsys.readouterr().out)
    assert (summary["proposals_answered"], summary["degraded"]) == (1, True)


def test_a_misspelled_option_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["ask", "--tempreature", "0.5", "What is 2 + 2?"])
    assert exited.value.code == 2
    assert "did you mean --temperature?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["batch", "rows.jsonl", "-o", "out.jsonl", "--show-proposals"])  # ask's only
    assert "unrecognized arguments: --show-proposals" in capsys.readouterr().err


def test_the_whole_error_is_printed(monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    assert cli.main(["ask", "hi", "--proposer", "openai:m temp=0.5"]) == 2
    err = capsys.readouterr().err
    assert "temp= is not a setting of its chat model; did you mean 'temperature'?" in err


def test_settings_by_name_or_a_clear_error() -> None:
    from moa_graph import MoAConfigError, MoAContext, build_moa_graph

    with pytest.raises(MoAConfigError, match="'roundz' is not a MoAContext setting: did you mean "
                       "'rounds'"):  # fmt: skip
        build_moa_graph().compile().invoke({"messages": [("user", "hi")]}, context={"roundz": 2})
    assert MoAContext(rounds=2).rounds == 2


@pytest.fixture
def rows_dir(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    return tmp_path


def test_batch_input_errors_leave_nothing_and_say_how_to_fix(rows_dir, capsys) -> None:
    assert cli.main(["batch", "missing.jsonl", "-o", "out.jsonl", "--no-progress"]) == 2
    assert "input missing.jsonl not found" in capsys.readouterr().err
    assert list(rows_dir.iterdir()) == []  # no stray output, journal or cache
    (rows_dir / "empty.jsonl").write_text("\n")
    assert cli.main(["batch", "empty.jsonl", "-o", "out.jsonl", "--no-progress"]) == 2
    assert "has no rows" in capsys.readouterr().err


def test_a_fixed_input_file_is_read_again(rows_dir, capsys, monkeypatch) -> None:
    server = ScriptedOpenAIServer(lambda body: "42").start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    try:
        rows = rows_dir / "rows.jsonl"
        rows.write_text('{"prompt": "a?"}\n{"question_typo": "b?"}\n')
        argv = ["batch", str(rows), "-o", "out.jsonl", "--no-progress", "--proposer", "openai:p",
                "--aggregator", "openai:p"]  # fmt: skip
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert "1 rows could not be read from the input" in err and "--retry-failed" not in err
        records = [json.loads(x) for x in (rows_dir / "out.jsonl").read_text().splitlines()]
        [unread] = [r for r in records if r["status"] == "error"]
        assert unread["error"]["type"] == "InputError" and unread["row"] == 1
        assert "row 1 has no prompt" in unread["error"]["message"]
        rows.write_text('{"prompt": "a?"}\n{"prompt": "b?"}\n')
        assert cli.main(argv) == 0
        records = [json.loads(x) for x in (rows_dir / "out.jsonl").read_text().splitlines()]
        assert sorted((r["row"], r["status"]) for r in records) == [(0, "ok"), (1, "ok")]
    finally:
        server.stop()
