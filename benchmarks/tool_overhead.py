"""What tool calling adds to a MoA run, against the tests' scripted OpenAI-compatible server.

Runs `ChatMoA` (3 ``openai:`` proposers and an aggregator, every upstream call answered after
``--latency-ms``) four ways on the same question and prints JSON per way: the median and p90
seconds to the final answer (for tools: the final tool call), the upstream calls, the bytes
sent upstream (the tool schemas travel in every request that has them) and the tokens the
server counted (it counts a fixed 11 in / 7 out per call, so tokens differ only by calls).

- ``text``: plain MoA, the aggregator answers in text.
- ``tools``: ``bind_tools([add])``, the aggregator calls the tool (proposers without tools).
- ``proposer_tools``: the proposers get the tool too; the aggregator reads their calls.
- ``tool_vote``: ``vote`` over the proposers' calls, no aggregator call.

    python benchmarks/tool_overhead.py [--runs 20] [--latency-ms 100]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))  # the tests' scripted server

from langchain_core.tools import tool

from moa_graph import ChatMoA, MoAContext
from tests.scripted_openai_server import ScriptedOpenAIServer, ToolCall, forced_call


@tool
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


def script(body: dict[str, Any]) -> "str | ToolCall":
    """Given tools, call the (first) tool with the question's numbers; else answer in text."""
    return forced_call(body) if body.get("tools") else "The answer is 7."


def measure(way: str, server: ScriptedOpenAIServer, runs: int) -> dict[str, Any]:
    """Run one way `runs` times; return its figures."""
    mode = "vote" if way == "tool_vote" else "synthesize"
    context = MoAContext(
        proposers=["openai:p"] * 3, aggregator="openai:agg", aggregator_mode=mode, retries=0,
        proposer_tools=way in ("proposer_tools", "tool_vote"),
    )  # fmt: skip
    model: Any = ChatMoA(context=context)
    if way != "text":
        model = model.bind_tools([add], tool_choice="add")
    seconds, calls, sent, tokens = [], 0, 0, 0
    for _ in range(runs):
        before = len(server.requests)
        start = time.perf_counter()
        reply = model.invoke("What is 3 + 4?")
        seconds.append(time.perf_counter() - start)
        assert reply.tool_calls if way != "text" else reply.content, reply
        bodies = server.requests[before:]
        calls += len(bodies)
        sent += sum(len(json.dumps(body)) for body in bodies)
        tokens += reply.usage_metadata["total_tokens"]
    seconds.sort()
    return {
        "way": way,
        "median_s": round(statistics.median(seconds), 4),
        "p90_s": round(seconds[int(0.9 * (len(seconds) - 1))], 4),
        "calls_per_run": calls / runs,
        "bytes_sent_per_run": round(sent / runs),
        "tokens_per_run": tokens / runs,
    }


def main() -> None:
    """Print one JSON object per way, then the overhead of each against ``text``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=100)
    args = parser.parse_args()
    server = ScriptedOpenAIServer(script, delay_s=args.latency_ms / 1000).start()
    os.environ.update(OPENAI_API_KEY="benchmark", OPENAI_BASE_URL=server.url)
    try:
        rows = [measure(way, server, args.runs)
                for way in ("text", "tools", "proposer_tools", "tool_vote")]  # fmt: skip
    finally:
        server.stop()
    base = rows[0]
    for row in rows:
        row["vs_text_s"] = round(row["median_s"] - base["median_s"], 4)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
