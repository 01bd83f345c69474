"""The README's runnable examples run as written, on the embedded model."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).parents[2] / "README.md"


def run_block(marker: str, tmp_path: Path) -> list[str]:
    """Run the README's first Python block that contains `marker`; return its output lines."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    [code, *_] = [block for block in blocks if marker in block]
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_python_api_example(tmp_path: Path) -> None:
    lines = run_block("asyncio.run(main())", tmp_path)
    assert len(lines) >= 4  # the answer, then one line per proposal
    assert sum(" local:smollm2 " in line for line in lines) == 3


def test_function_node_example(tmp_path: Path) -> None:
    lines = run_block("async def ask_moa(", tmp_path)
    assert lines[-1] == "failed proposers: 0"
    assert "".join(lines[:-1]).strip()  # the answer


def test_sync_example(tmp_path: Path) -> None:
    lines = run_block("result = graph.invoke(", tmp_path)
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
