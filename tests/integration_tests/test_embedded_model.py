"""The graph and the CLI against the real embedded model behind its real HTTP server."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from moa_graph import LocalModelError, MoAContext, build_moa_graph
from moa_graph.local_server import LocalModelServer

pytestmark = pytest.mark.integration

QUESTION = {"messages": [HumanMessage("What is the boiling point of water at sea level?")]}


async def test_default_graph_answers_with_proposal_records_and_usage() -> None:
    out = await build_moa_graph().compile().ainvoke(QUESTION, context={"max_tokens": 96})

    answer = out["messages"][-1]
    assert isinstance(answer, AIMessage) and answer.text.strip()
    assert answer.usage_metadata and answer.usage_metadata["input_tokens"] > 0
    assert [(p["layer"], p["index"], p["model"]) for p in out["proposals"]] == [
        (1, 0, "local:smollm2"), (1, 1, "local:smollm2"), (1, 2, "local:smollm2"),
    ]  # fmt: skip
    answered = [p for p in out["proposals"] if p["content"]]
    assert answered, out["proposals"]
    for p in answered:
        assert p["usage"] and p["usage"]["input_tokens"] > 0
        # max_tokens reaches llama.cpp's server (else answers run on to the context size);
        # llama-cpp-python once reported 97 for a reply cut at 96, so allow one token more.
        assert 0 < p["usage"]["output_tokens"] <= 96 + 1
        assert p["latency_s"] > 0


async def test_streaming_over_http_yields_only_aggregator_tokens() -> None:
    graph = build_moa_graph().compile()
    nodes, text = set(), []
    async for mode, chunk in graph.astream(
        QUESTION, context={"max_tokens": 64, "rounds": 2}, stream_mode=["messages", "values"]
    ):
        if mode == "messages":
            nodes.add(chunk[1]["langgraph_node"])
            text.append(chunk[0].text)
        else:
            final = chunk
    assert nodes == {"aggregator"}
    assert len(text) > 1 and "".join(text).strip() == final["messages"][-1].text.strip()
    # Proposers answered whole, with usage, while the aggregator streamed.
    assert [p["layer"] for p in final["proposals"]] == [1, 1, 1, 2, 2, 2]
    assert all(p["usage"] for p in final["proposals"] if p["content"])


def test_cli_ask_json_runs_as_a_subprocess() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOA_")}
    done = subprocess.run(
        [sys.executable, "-m", "moa_graph.cli", "ask", "--json", "--max-tokens", "64",
         "Name a planet of the solar system."],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"].strip()
    assert len(result["proposals"]) == 3
    assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
    assert "embedded model smollm2 ready" in done.stderr


def test_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    server = LocalModelServer(broken, alias="broken", startup_timeout_s=60)
    with pytest.raises(LocalModelError, match="exited with status") as caught:
        server.start()
    assert "Failed to load model from file" in str(caught.value)
    assert f"full log: {server.log_path}" in str(caught.value)
    assert server.log_path.is_file()
    server.log_path.unlink()


def test_server_stops_when_the_process_that_started_it_is_killed() -> None:
    starter = (
        "import time\n"
        "from moa_graph.local_server import LocalModelServer, model_path\n"
        "server = LocalModelServer(model_path('smollm2'), alias='smollm2')\n"
        "print(server.start(), server._process.pid, server.log_path, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    url, pid, log_path = parent.stdout.readline().split()
    assert url.startswith("http://127.0.0.1:") and not Path(log_path).exists()

    parent.kill()  # no atexit handler runs
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(int(pid)):
        assert time.monotonic() < deadline, "the embedded model server outlived its parent"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def ask_json(*argv: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOA_")}
    done = subprocess.run(
        [sys.executable, "-m", "moa_graph.cli", "ask", "--json", *argv],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("preset", ["vote", "self-moa"])
def test_cli_presets_answer(preset: str) -> None:
    result = ask_json("--preset", preset, "--max-tokens", "32", "What is 2 + 2? Answer briefly.")
    assert result["answer"].strip()
    expected = {"vote": (3, "vote", 0), "self-moa": (6, "synthesize", 1)}[preset]
    aggregation = result["aggregation"]
    assert (len(result["proposals"]), aggregation["requested_mode"], aggregation["calls"]) == (
        expected
    )
    if aggregation["mode"] == "vote":  # the answer is one proposal's text, verbatim
        assert result["answer"] == result["proposals"][aggregation["chosen"]]["content"]
    assert all(isinstance(p["seed"], int) for p in result["proposals"])


def test_two_runs_without_a_seed_give_different_samples() -> None:
    argv = ("--max-tokens", "40", "--mode", "vote", "Write one sentence about the sea.")
    first, second = ask_json(*argv), ask_json(*argv)
    texts = [[p["content"] for p in run["proposals"]] for run in (first, second)]
    assert texts[0] != texts[1]
    assert {p["seed"] for p in first["proposals"]} != {p["seed"] for p in second["proposals"]}


async def test_the_fusion_judges_analysis_parses_on_the_embedded_model() -> None:
    # Schema-constrained JSON (the forced analysis tool) with bounded lists and texts.
    context = MoAContext(proposers=["local:smollm2"] * 2, aggregator_mode="analyze",
                         max_tokens=32, seed=7)  # fmt: skip
    out = (
        await build_moa_graph()
        .compile()
        .ainvoke({"messages": [HumanMessage("Name a primary colour.")]}, context=context)
    )
    aggregation = out["aggregation"]
    assert (aggregation["mode"], aggregation["fallback"]) == ("analyze", None), aggregation
    assert set(aggregation["analysis"]) >= {"consensus", "contradictions", "blind_spots"}
    assert out["messages"][-1].text.strip()
