"""Latency of a cascade when its first stage agrees and when it escalates, on a scripted server.

The tests' scripted OpenAI-compatible server answers every call after ``--latency-ms``. The
cascade asks 3 samples of a cheap model first; the MoA behind it is 3 proposers and an
aggregator. Questions containing "agree" get the same answer from every cheap sample (the
cascade answers alone); others get answers that differ by seed (the run escalates). Prints
JSON: p50 and p95 seconds and calls per run for each path, and for plain MoA without a cascade.

    python benchmarks/cascade_latency.py [--runs 30] [--latency-ms 100]
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

from langchain_core.messages import HumanMessage

from moa_graph import MoAContext, build_moa_graph
from moa_graph.eval.stats import percentile
from tests.scripted_openai_server import ScriptedOpenAIServer


def script(body: dict[str, Any]) -> str:
    """Cheap samples agree on "agree" questions, else differ; the MoA answers 42."""
    if body["model"] == "cheap":
        agree = "agree" in body["messages"][-1]["content"]
        return "It is 42." if agree else f"It is {body['seed']}."
    return "It is 42."


def measure(path: str, server: ScriptedOpenAIServer, runs: int) -> dict[str, Any]:
    """Run one path `runs` times; return its latency percentiles and calls per run."""
    cascade = None if path == "no cascade" else ["openai:cheap n=3"]
    context = MoAContext(
        cascade=cascade, proposers=["openai:p"] * 3, aggregator="openai:agg", retries=0
    )
    graph = build_moa_graph().compile()
    question = "agree: what is 6 x 7?" if path == "first stage agrees" else "what is 6 x 7?"
    seconds, before = [], len(server.requests)
    for _ in range(runs):
        start = time.perf_counter()
        out = graph.invoke({"messages": [HumanMessage(question)]}, context=context)
        seconds.append(time.perf_counter() - start)
        expected = "cascade" if path == "first stage agrees" else "synthesize"
        assert out["aggregation"]["mode"] == expected, out["aggregation"]
    return {
        "path": path,
        "p50_s": round(percentile(seconds, 0.5), 4),
        "p95_s": round(percentile(seconds, 0.95), 4),
        "mean_s": round(statistics.mean(seconds), 4),
        "calls_per_run": (len(server.requests) - before) / runs,
    }


def main() -> None:
    """Print one JSON object per path."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=100)
    args = parser.parse_args()
    server = ScriptedOpenAIServer(script, delay_s=args.latency_ms / 1000).start()
    os.environ.update(OPENAI_API_KEY="benchmark", OPENAI_BASE_URL=server.url)
    try:
        for path in ("first stage agrees", "escalates", "no cascade"):
            print(json.dumps(measure(path, server, args.runs)))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
