"""`moa-graph batch` as a user runs it: killed and resumed, and on the embedded model."""

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

CONCURRENCY = 8
CALLS_PER_ROW = 4  # 3 proposers + the aggregator


def batch(*argv: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "moa_graph.cli", "batch", *argv, "--no-progress"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_killed_batch_resumes_without_losing_or_repeating_rows(tmp_path: Path) -> None:
    server = ScriptedOpenAIServer(lambda body: "The answer is 42.", delay_s=0.05).start()
    source, output = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"q{i}?"}) + "\n"
                              for i in range(120)))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOA_")}
    env.update(OPENAI_API_KEY="test", OPENAI_BASE_URL=server.url, MOA_AGGREGATOR="openai:agg",
               MOA_PROPOSERS="openai:m,openai:m,openai:m")  # fmt: skip
    argv = (str(source), "-o", str(output), "--concurrency", str(CONCURRENCY))
    try:
        first = batch(*argv, env=env)
        deadline = time.monotonic() + 120
        while lines(output) < 60:
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        at_kill = len(server.requests)

        second = batch(*argv, env=env)
        assert second.wait(timeout=120) == 0, second.stderr.read() if second.stderr else ""
        third = batch(*argv, env=env)
        before_third = len(server.requests)
        assert third.wait(timeout=60) == 0
    finally:
        server.stop()
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(f"r{i}" for i in range(120))  # each once
    assert all(r["status"] == "ok" for r in records)
    extra = before_third - 120 * CALLS_PER_ROW
    # Calls redone after the kill: at most those in flight (finished proposer calls of
    # unfinished rows come from LangGraph's node cache).
    assert 0 <= extra <= CONCURRENCY * 3, (extra, at_kill)
    assert len(server.requests) == before_third  # a finished batch makes no call


def test_embedded_model_batch_with_two_samples(tmp_path: Path) -> None:
    source, output = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    prompts = ["Name a fruit.", "What is 2 + 3?"]
    source.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOA_")}
    done = subprocess.run(
        [sys.executable, "-m", "moa_graph.cli", "batch", str(source), "-o", str(output),
         "--samples", "2", "--max-tokens", "24", "--concurrency", "12", "--timeout", "20"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted((r["row"], r["sample"]) for r in records) == [
        (i, s) for i in range(2) for s in (0, 1)
    ]
    for record in records:
        assert record["status"] == "ok" and record["answer"].strip()
        assert len(record["proposals"]) == 3 and record["usage"]["output_tokens"] > 0
    seeds = {(r["row"], r["sample"]): r["proposals"][0]["seed"] for r in records}
    assert seeds[(0, 0)] != seeds[(0, 1)]  # each sample has its own seeds
    manifest = json.loads(Path(f"{output}.manifest.json").read_text())
    assert manifest["records"] == {"ok": 4, "error": 0}
    written = [p for p in tmp_path.iterdir() if p != source]
    assert len(written) >= 3  # output, manifest, journal, cache
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o600"}  # prompts and answers
