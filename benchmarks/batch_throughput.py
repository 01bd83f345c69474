"""Batch throughput with simulated-latency models: moa-graph's batch against a bare ``abatch``.

1,024 rows, 3 proposers and an aggregator that each take 1 s (asyncio sleep, no network), at
64 and 256 rows in flight. Ideal wall time: ceil(rows / in flight) x 2 x latency (the
proposers of a row run side by side, then the aggregator). Prints JSON: wall time and
fraction of ideal for `BatchRunner` (records written to a JSONL file) and for
``graph.abatch(..., config={"max_concurrency": N})`` on the same graph, in the same process.
Note that ``max_concurrency`` also caps each run's own proposer fan-out (docs/notes.md, "Batch").
Targets: the batch within 5% of the bare run; at least 0.95 of ideal at 64 in flight.
With ``--ray`` it also runs the batch on Ray actors of a local cluster (one per CPU, each
building the same simulated graph) and reports their fraction of ideal.

    python benchmarks/batch_throughput.py [--rows 1024] [--latency-s 1.0] [--in-flight 64 256]
    python benchmarks/batch_throughput.py --ray --in-flight 128 512
"""

import argparse
import asyncio
import functools
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from critical_path import SleepingChatModel
from langchain_core.messages import HumanMessage
from langgraph.graph.state import CompiledStateGraph

from moa_graph import MoAContext, build_moa_graph
from moa_graph.batch import BatchRunner
from moa_graph.batch.rows import to_row


def sleeping_graph(latency_s: float) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The benchmark's graph: 3 proposers and an aggregator that each sleep `latency_s`."""
    proposers = [SleepingChatModel(latency_s=latency_s) for _ in range(3)]
    aggregator = SleepingChatModel(latency_s=latency_s)
    return build_moa_graph(proposers=proposers, aggregator=aggregator).compile()


async def run_on_ray(
    context: MoAContext, prompts: list[str], in_flight: int, latency_s: float
) -> float:
    """Run the batch on Ray actors (one per CPU); return its wall time after the actors start."""
    from moa_graph.batch.ray_executor import RayPairs

    actors = os.cpu_count() or 1  # a local cluster has one CPU per core
    executor = RayPairs(
        context, actors=actors, per_actor=math.ceil(in_flight / actors),
        graph_factory=functools.partial(sleeping_graph, latency_s),
        runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}},
    )  # fmt: skip
    try:
        warm_up = BatchRunner(context=context, concurrency=actors, executor=executor)
        [_ async for _ in warm_up.run([to_row(i, "warm-up") for i in range(actors)])]
        start = time.perf_counter()
        rows = (to_row(i, p) for i, p in enumerate(prompts))
        runner = BatchRunner(context=context, concurrency=in_flight, executor=executor)
        count = sum([1 async for _ in runner.run(rows)])
        assert count == len(prompts) and runner.stats.failed == 0
        return time.perf_counter() - start
    finally:
        executor.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--latency-s", type=float, default=1.0)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--ray", action="store_true", help="also run on Ray actors")
    args = parser.parse_args()
    graph = sleeping_graph(args.latency_s)
    context = MoAContext(proposer_timeout_s=600)
    prompts = [f"question {i}" for i in range(args.rows)]
    results = []
    for in_flight in args.in_flight:
        ideal = math.ceil(args.rows / in_flight) * 2 * args.latency_s
        with tempfile.TemporaryDirectory() as folder:
            runner = BatchRunner(
                graph=graph, context=context, concurrency=in_flight,
                output=str(Path(folder) / "out.jsonl"),
            )  # fmt: skip
            start = time.perf_counter()
            rows = (to_row(i, p) for i, p in enumerate(prompts))
            count = sum([1 async for _ in runner.run(rows)])
            batch_s = time.perf_counter() - start
        assert count == args.rows and runner.stats.failed == 0
        inputs = [{"messages": [HumanMessage(p)]} for p in prompts]
        start = time.perf_counter()
        await graph.abatch(inputs, {"max_concurrency": in_flight}, context=context)
        bare_s = time.perf_counter() - start
        result = {
            "rows_in_flight": in_flight,
            "ideal_s": ideal,
            "batch_s": round(batch_s, 2),
            "batch_fraction_of_ideal": round(ideal / batch_s, 3),
            "bare_abatch_s": round(bare_s, 2),
            "bare_fraction_of_ideal": round(ideal / bare_s, 3),
            "batch_vs_bare": round(batch_s / bare_s, 3),
        }
        if args.ray:
            ray_s = await run_on_ray(context, prompts, in_flight, args.latency_s)
            result.update(ray_s=round(ray_s, 2), ray_fraction_of_ideal=round(ideal / ray_s, 3))
        results.append(result)
    print(json.dumps({"rows": args.rows, "latency_s": args.latency_s, "runs": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
