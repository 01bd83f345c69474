"""Straggler cut-off: run latency with ``first_k`` against waiting for every proposer.

Six proposers whose call latency is log-normal (median 1 s, sigma 1.0, so p95 about 5.2 s),
one round, an aggregator that takes 0.1 s; 200 runs per setting, 50 at a time, the same
latency draws for both settings. Prints JSON: p50 and p95 run latency, and their ratio.
Target: p95 with ``first_k=4`` at most 0.5x of waiting for all.

    python benchmarks/first_k.py [--runs 200] [--first-k 4] [--proposers 6] [--sigma 1.0]
"""

import argparse
import asyncio
import json
import random
import statistics
import time
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from moa_graph import MoAContext, build_moa_graph


class DrawnLatencyChatModel(BaseChatModel):
    """Answers after a latency taken, in call order, from `latencies_s` (shared, consumed)."""

    latencies_s: list[float] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "drawn-latency"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> ChatResult:
        await asyncio.sleep(self.latencies_s.pop())
        return ChatResult(generations=[ChatGeneration(message=AIMessage("an answer"))])


async def run_setting(draws: list[list[float]], first_k: int | None, batch: int) -> list[float]:
    """Run one MoA per row of `draws` (one latency per proposer); return run latencies (s)."""
    context = MoAContext(first_k=first_k, proposer_timeout_s=600)
    question = {"messages": [HumanMessage("q")]}
    latencies: list[float] = []

    async def one(row: list[float]) -> None:
        # One graph per run, so that each proposer call takes its own drawn latency.
        graph = build_moa_graph(
            proposers=[DrawnLatencyChatModel(latencies_s=[s]) for s in row],
            aggregator=DrawnLatencyChatModel(latencies_s=[0.1]),
        ).compile()
        start = time.perf_counter()
        await graph.ainvoke(question, context=context)
        latencies.append(time.perf_counter() - start)

    for i in range(0, len(draws), batch):
        await asyncio.gather(*(one(row) for row in draws[i : i + batch]))
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_s": round(cuts[49], 3), "p95_s": round(cuts[94], 3)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--first-k", type=int, default=4)
    parser.add_argument("--proposers", type=int, default=6)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=50, help="runs in flight at once")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    draws = [
        [rng.lognormvariate(0.0, args.sigma) for _ in range(args.proposers)]
        for _ in range(args.runs)
    ]
    calls = sorted(s for row in draws for s in row)
    wait_all = summary(await run_setting(draws, None, args.batch))
    cut = summary(await run_setting(draws, args.first_k, args.batch))
    print(
        json.dumps(
            {
                "proposers": args.proposers,
                "runs": args.runs,
                "call_latency_s": {
                    "p50": round(statistics.median(calls), 3),
                    "p95": round(calls[int(0.95 * len(calls))], 3),
                },
                "wait_for_all": wait_all,
                f"first_k={args.first_k}": cut,
                "p50_ratio": round(cut["p50_s"] / wait_all["p50_s"], 3),
                "p95_ratio": round(cut["p95_s"] / wait_all["p95_s"], 3),
                "target_p95_ratio": 0.5,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
