"""`moa-graph eval` in-process: the printed table, exported files and exit codes."""

import json
from pathlib import Path

import pytest

from moa_graph.cli import main
from tests.eval_scripted import (
    A,
    B,
    jsonl,
)
from tests.scripted_openai_server import ScriptedOpenAIServer


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


def test_on_a_terminal_the_tables_are_drawn_and_the_file_keeps_markdown(
    server: ScriptedOpenAIServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    suite = jsonl(tmp_path / "s.jsonl", [{"prompt": "q 1", "reference": 2}])
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")  # rich's width: cells unwrapped
    status = main(["eval", "--suite", suite, "--systems", f"{B},{A}", "--no-progress",
                   "--no-plot", "--out", str(tmp_path / "out")])  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 0
    assert "|---|" not in printed and "───" in printed  # a rich table, not Markdown source
    assert "1.000 (1/1)" in printed
    assert f"| {A} | 1.000 (1/1) |" in (tmp_path / "out" / "summary.md").read_text()
