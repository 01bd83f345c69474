import json

import pytest

from moa_graph import cli


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
