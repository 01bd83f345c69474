"""Ctrl-C and SIGTERM stop a running command cleanly: its exit status, its files, a re-run.

Real signals to real ``moa-graph`` processes over a scripted server with slow calls; how long
each took to stop is printed by benchmarks/interrupts.py, not asserted here.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.scripted_openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.integration

ROWS = 40


@pytest.fixture
def slow(tmp_path: Path):
    server = ScriptedOpenAIServer(lambda body: "The answer is 42.", delay_s=0.2).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOA_")}
    env.update(OPENAI_API_KEY="test", OPENAI_BASE_URL=server.url, MOA_AGGREGATOR="openai:agg",
               MOA_PROPOSERS="openai:m,openai:m", MOA_RETRIES="0")  # fmt: skip
    server.env = env  # type: ignore[attr-defined]
    yield server
    server.stop()


def moa(*argv: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "moa_graph.cli", *argv], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def stop_when(process: subprocess.Popen[str], ready, signum: int) -> tuple[int, str]:
    deadline = time.monotonic() + 60
    while not ready():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)  # stops well within this (see benchmarks)
    return process.returncode, stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_batch_keeps_whole_rows_and_resumes_each_row_once(slow, tmp_path, signum):
    source, output = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"q{i}?"}) + "\n"
                              for i in range(ROWS)))  # fmt: skip
    argv = ("batch", str(source), "-o", str(output), "--concurrency", "8", "--no-progress")
    status, stderr = stop_when(moa(*argv, env=slow.env), lambda: len(lines(output)) >= 8, signum)
    assert status == 128 + signum, stderr
    assert "run the same command again to resume" in stderr
    assert "Task was destroyed" not in stderr and "Traceback" not in stderr
    written = [json.loads(line) for line in lines(output)]  # every line whole
    assert 8 <= len(written) < ROWS and all(r["status"] == "ok" for r in written)
    manifest = json.loads(Path(f"{output}.manifest.json").read_text())
    assert manifest["this_run"]["stopped"] == "interrupted"
    if signum == signal.SIGTERM:
        return
    again = moa(*argv, env=slow.env)
    assert again.wait(timeout=120) == 0, again.communicate()[1]
    ids = sorted(json.loads(line)["id"] for line in lines(output))
    assert ids == sorted(f"r{i}" for i in range(ROWS))  # every row exactly once


def test_a_stopped_eval_says_how_to_go_on(slow, tmp_path: Path) -> None:
    suite = tmp_path / "s.jsonl"
    suite.write_text("".join(json.dumps({"prompt": f"q {i}", "reference": "42"}) + "\n"
                             for i in range(ROWS)))  # fmt: skip
    out = tmp_path / "eval"
    process = moa("eval", "--suite", f"jsonl:{suite}", "--systems", "moa-lite,single:openai:m",
                  "--out", str(out), "--no-progress", env=slow.env)  # fmt: skip
    status, stderr = stop_when(process, lambda: (out / "runs").is_dir() and any(
        lines(p) for p in (out / "runs").glob("*.jsonl")), signal.SIGINT)  # fmt: skip
    assert status == 130, stderr
    assert "run the same command again" in stderr and "Task was destroyed" not in stderr


def test_ask_stops_on_ctrl_c_and_a_second_one_exits_at_once(slow) -> None:
    process = moa("ask", "What is 6 x 7?", env=slow.env)
    deadline = time.monotonic() + 60
    while not slow.requests:  # inside the run: the proposers were asked
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "stopped by SIGINT" in stderr
