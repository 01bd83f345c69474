"""Every code block of the README and the docs site runs, or says why it cannot run offline.

Python blocks run as written, each in its own process, on the embedded model; a few have
checks of their output. Other blocks (shell commands, settings files) carry a
``<!-- not run: reason -->`` comment just before them. Pictures (mermaid) and captured output
(text) are not code.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NOT_CODE = {"mermaid", "text"}
FENCE = re.compile(r"(?P<before>[^\n]*)\n```(?P<lang>\w*)\n(?P<code>.*?)```", re.S)


def blocks() -> list[tuple[str, str, str, bool]]:
    """(page, language, code, marked not run) for every fenced block."""
    found = []
    for page in PAGES:
        for match in FENCE.finditer("\n" + page.read_text()):
            marked = match["before"].startswith("<!-- not run: ")
            found.append((str(page.relative_to(ROOT)), match["lang"], match["code"], marked))
    return found


CHECKED = {
    "asyncio.run(main())": "test_python_api_example",
    "async def ask_moa(": "test_function_node_example",
    'result = graph.invoke(\n    {"messages": [("user", "Name two uses': "test_sync_example",
    "records = batch_generate(": "test_batch_example",
    "report = run_eval(": "test_eval_example",
    'print(proposal["model"], proposal["status"]': "test_quickstart",
    'reply = chain.invoke({"a": 17': "test_chat_model_example",
    'middleware=[ForceToolOnFirstCall("calculate")]': "test_embedded_agent_example",
}
"""Blocks whose output a test below checks, by a line of their code."""
MARKER = {test: marker for marker, test in CHECKED.items()}


def run_block(marker: str, tmp_path: Path) -> list[str]:
    """Run the first Python block that contains `marker`; return its output lines."""
    [code, *_] = [code for _, lang, code, _ in blocks() if lang == "python" and marker in code]
    return run_code(code, tmp_path)


def run_code(code: str, tmp_path: Path) -> list[str]:
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_every_block_runs_or_says_why_not() -> None:
    unexplained = [
        f"{page}: {lang or 'plain'} block: {code.splitlines()[0] if code else ''}"
        for page, lang, code, marked in blocks()
        if lang not in NOT_CODE and lang != "python" and not marked
    ]
    assert unexplained == [], "mark these with <!-- not run: reason --> or make them Python"
    reasons = re.findall(r"(?m)^<!-- not run: (.*?) -->", "".join(p.read_text() for p in PAGES))
    assert all(len(reason.split()) >= 3 for reason in reasons)


OTHER_PYTHON = [
    pytest.param(code, id=f"{page}:{code.splitlines()[0][:40]}")
    for page, lang, code, marked in blocks()
    if lang == "python" and not marked and not any(m in code for m in CHECKED)
]


@pytest.mark.parametrize("code", OTHER_PYTHON)
def test_other_python_blocks_run(code: str, tmp_path: Path) -> None:
    run_code(code, tmp_path)


def test_quickstart(tmp_path: Path) -> None:
    lines = run_block('print(proposal["model"], proposal["status"]', tmp_path)
    assert sum(line.startswith("local:smollm2 ok ") for line in lines) == 3
    assert "".join(lines[:-3]).strip()  # the answer


def test_python_api_example(tmp_path: Path) -> None:
    lines = run_block("asyncio.run(main())", tmp_path)
    assert len(lines) >= 4  # the answer, then one line per proposal
    assert sum(" local:smollm2 " in line for line in lines) == 3


def test_function_node_example(tmp_path: Path) -> None:
    lines = run_block("async def ask_moa(", tmp_path)
    assert lines[-1] == "failed proposers: 0"
    assert "".join(lines[:-1]).strip()  # the answer


def test_sync_example(tmp_path: Path) -> None:
    lines = run_block(MARKER["test_sync_example"], tmp_path)
    mode, statuses = lines[-1].split(" ", 1)
    assert mode in ("vote", "synthesize")  # vote, or its documented fallback
    assert statuses == "['ok', 'ok', 'ok']"
    assert "".join(lines[:-1]).strip()  # the answer


def test_batch_example(tmp_path: Path) -> None:
    lines = run_block("records = batch_generate(", tmp_path)
    assert [line.split()[:3] for line in lines] == [
        ["0", "0", "ok"], ["0", "1", "ok"], ["c1", "0", "ok"], ["c1", "1", "ok"],
    ]  # fmt: skip


def test_eval_example(tmp_path: Path) -> None:
    lines = run_block("report = run_eval(", tmp_path)
    rows = [line.split() for line in lines[:2]]
    assert [row[0] for row in rows] == ["single:local:smollm2", "vote"]
    for _, correct, n, tokens in rows:
        assert 0 <= int(correct) <= 4 and n == "4" and int(tokens) > 0
    assert lines[2].startswith("vote vs single:local:smollm2: ")


def test_chat_model_example(tmp_path: Path) -> None:
    lines = run_block('reply = chain.invoke({"a": 17', tmp_path)
    total, answered, degraded = lines[-1].split()
    assert int(total) > 0 and answered == "3" and degraded == "False"
    assert "".join(lines[:-1]).strip()  # the answer


def test_embedded_agent_example(tmp_path: Path) -> None:
    colour, *turns = run_block(MARKER["test_embedded_agent_example"], tmp_path)
    assert colour.startswith("Colour(name=")  # a valid object, whatever the 135M model wrote
    kinds = [line.split(" ", 1)[0] for line in turns]
    assert kinds[:3] == ["human", "ai", "tool"]  # the forced call ran the tool
    assert "'name': 'calculate'" in turns[1]
