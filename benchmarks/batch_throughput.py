"""Batch throughput with simulated-latency models: moa-graph's batch against a bare ``abatch``.

1,024 rows, 3 proposers and an aggregator that each take 1 s (asyncio sleep, no network), at
64 and 256 rows in flight. Ideal wall time: ceil(rows / in flight) x 2 x latency (the
proposers of a row run side by side, then the aggregator). Prints JSON: wall time and
fraction of ideal for `BatchRunner` (records written to a JSONL file) and for
``graph.abatch(..., config={"max_concurrency": N})`` on the same graph, in the same process.
Note that ``max_concurrency`` also caps each run's own proposer fan-out (BATCH.md).
Targets: the batch within 5% of the bare run; at least 0.95 of ideal at 64 in flight.

    python benchmarks/batch_throughput.py [--rows 1024] [--latency-s 1.0] [--in-flight 64 256]
"""

import argparse
import asyncio
import json
import math
import tempfile
import time
from pathlib import Path

from critical_path import SleepingChatModel
from langchain_core.messages import HumanMessage

from moa_graph import MoAContext, build_moa_graph
from moa_graph.batch import BatchRunner
from moa_graph.batch.rows import to_row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--latency-s", type=float, default=1.0)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[64, 256])
    args = parser.parse_args()
    proposers = [SleepingChatModel(latency_s=args.latency_s) for _ in range(3)]
    aggregator = SleepingChatModel(latency_s=args.latency_s)
    graph = build_moa_graph(proposers=proposers, aggregator=aggregator).compile()
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
        results.append(
            {
                "rows_in_flight": in_flight,
                "ideal_s": ideal,
                "batch_s": round(batch_s, 2),
                "batch_fraction_of_ideal": round(ideal / batch_s, 3),
                "bare_abatch_s": round(bare_s, 2),
                "bare_fraction_of_ideal": round(ideal / bare_s, 3),
                "batch_vs_bare": round(batch_s / bare_s, 3),
            }
        )
    print(json.dumps({"rows": args.rows, "latency_s": args.latency_s, "runs": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
