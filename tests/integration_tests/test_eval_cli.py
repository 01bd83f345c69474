"""`moa-graph eval` on the embedded model, as a user runs it.

Nothing here asserts which system wins: at 135M nothing is distinguishable (docs/notes.md,
"Evaluation"). The tests assert that every figure is computed from the items the run recorded.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from moa_graph.eval.stats import wilson

pytestmark = pytest.mark.integration

SYSTEMS = ["single:local:smollm2", "vote"]


def run(embedded_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command in its own process, as a user does, on the session's embedded server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOA_")}
    env["MOA_LOCAL_BASE_URL"] = embedded_url
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=600, env=env
    )


def moa_eval(embedded_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return run(embedded_url, "-m", "moa_graph.cli", "eval", *argv, "--no-progress")


def test_exact_suite_through_the_cli(tmp_path: Path, embedded_url: str) -> None:
    out = tmp_path / "eval"
    printed = moa_eval(
        embedded_url, "--suite", "arithmetic", "--n", "6", "--systems", ",".join(SYSTEMS),
        "--max-tokens", "32", "--out", str(out),
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    results = json.loads((out / "results.json").read_text())
    items = results["items"]
    assert len(items) == 6 * len(SYSTEMS)
    for record in items:
        assert record["ok"], record["turns"]
        assert record["score"] is not None and record["correct"] in (True, False)
        assert record["tokens"] > 0 and record["latency_s"] > 0
    summary = {s["name"]: s for s in results["summary"]["systems"]}
    for name in SYSTEMS:
        mine = [r for r in items if r["system"] == name]
        correct = sum(r["correct"] for r in mine)
        assert summary[name]["correct"] == correct
        assert (summary[name]["low"], summary[name]["high"]) == pytest.approx(wilson(correct, 6))
        assert summary[name]["tokens_per_item"] == pytest.approx(sum(r["tokens"] for r in mine) / 6)
    assert summary["single:local:smollm2"]["calls_per_item"] == 1
    assert summary["vote"]["calls_per_item"] == 3
    [comparison] = results["summary"]["comparisons"]
    assert comparison["verdict"] in ("better", "not distinguishable", "worse")
    assert "95% CI" in printed.stdout
    assert printed.stdout.strip() in (out / "summary.md").read_text()
    assert (out / "plot.png").stat().st_size > 10_000
    assert {oct(p.stat().st_mode & 0o777) for p in out.rglob("*") if p.is_file()} == {"0o600"}


def test_mt_bench_judged_by_the_embedded_model(tmp_path: Path, embedded_url: str) -> None:
    # The 135M judge is plumbing only: it rarely writes a [[rating]]; its raw text is kept.
    out = tmp_path / "mt"
    printed = moa_eval(
        embedded_url, "--suite", "mt-bench", "--n", "1", "--systems", ",".join(SYSTEMS),
        "--judge", "local:smollm2", "--judge-mode", "single", "--judge-max-tokens", "48",
        "--max-tokens", "32", "--out", str(out), "--no-plot",
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(items) == 1 * len(SYSTEMS)
    for record in items:
        assert [t["status"] for t in record["turns"]] == ["ok", "ok"]
        assert (
            record["turns"][1]["usage"]["input_tokens"]
            > record["turns"][0]["usage"]["input_tokens"]
        )  # the second turn carries the first
        assert len(record["judgments"]) == 2
        for judgment in record["judgments"]:
            assert judgment["text"] and judgment["prompt"].startswith("single-v1")
            assert judgment["rating"] is None or 1 <= judgment["rating"] <= 10


def test_flask_judged_by_the_embedded_model(tmp_path: Path, embedded_url: str) -> None:
    # Plumbing only, as for MT-Bench: the 135M judge rarely ends with a dictionary of scores.
    suite = tmp_path / "flask.jsonl"
    item = {"idx": 1, "instruction": "What is 2 + 2?", "answer": "4", "skill":
            ["Logical Correctness", "Conciseness", "Readability"], "domain": ["Math"],
            "difficulty": "simple lifestyle knowledge"}  # fmt: skip
    suite.write_text(json.dumps(item) + "\n")
    out = tmp_path / "flask"
    printed = moa_eval(
        embedded_url, "--suite", f"flask:{suite}", "--systems", "single:local:smollm2",
        "--judge", "local:smollm2", "--judge-max-tokens", "64", "--max-tokens", "32",
        "--out", str(out), "--no-plot",
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    [record] = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    [judgment] = record["judgments"]
    assert judgment["text"] and judgment["prompt"] == "moa-graph-flask-v1"
    assert all(1 <= score <= 5 for score in record["skill_scores"].values())
    assert record["judge_errors"] == (len(record["skill_scores"]) < 3)
    assert "| skill (1-5) |" in printed.stdout or record["skill_scores"] == {}


TWO_RUNS = """
from moa_graph.eval import run_eval
for _ in range(2):
    report = run_eval("arithmetic", ["single:local:smollm2"], n=2, settings={"max_tokens": 8})
    print(report.systems[0].failures)
"""


def test_two_sync_runs_in_one_process_share_the_event_loop(embedded_url: str) -> None:
    # With asyncio.run per call, the second run's first request met a connection of the closed
    # loop ("Event loop is closed") and that item failed.
    done = run(embedded_url, "-c", TWO_RUNS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0"]
