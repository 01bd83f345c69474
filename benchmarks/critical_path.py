"""Orchestration overhead of the MoA graph, with simulated-latency models (no network).

Runs the graph with chat models that only sleep, and prints JSON comparing its wall time with
the critical path (per layer the slowest proposer, plus the aggregator) and with a plain
asyncio implementation of the same MoA. Target: 4 proposers x 2 rounds at 100 ms per call
within 1.03x of the critical path.

Two critical paths are reported. "nominal" is (rounds + 1) x latency. "measured" adds up the
models' own sleep durations as they happened (per layer the longest, plus the aggregator's):
an asyncio timer fires up to about a millisecond late, which no implementation avoids, so the
measured path is what the orchestration is judged against.

    python benchmarks/critical_path.py [--proposers 4] [--rounds 2] [--latency-ms 100] [--runs 20]
"""

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from moa_graph import AGGREGATE_AND_SYNTHESIZE_PROMPT, MoAContext, build_moa_graph
from moa_graph.moa import inject_references


class SleepingChatModel(BaseChatModel):
    """A chat model that answers after `latency_s` seconds of asyncio sleep.

    Appends the real duration of each sleep, in seconds, to `durations` (a list the graph's
    copies of the model share).
    """

    latency_s: float
    durations: list[float] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "sleeping"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> ChatResult:
        start = time.perf_counter()
        await asyncio.sleep(self.latency_s)
        self.durations.append(time.perf_counter() - start)
        return ChatResult(generations=[ChatGeneration(message=AIMessage("an answer"))])


async def plain_asyncio_moa(
    proposers: list[BaseChatModel], aggregator: BaseChatModel, rounds: int, question: str
) -> str:
    """The same MoA with asyncio.gather and nothing else, as the baseline."""
    messages: list[BaseMessage] = [HumanMessage(question)]
    references: list[str] = []
    for _ in range(rounds):
        prompt = (
            inject_references(messages, references, AGGREGATE_AND_SYNTHESIZE_PROMPT)
            if references
            else messages
        )
        answers = await asyncio.gather(*(m.ainvoke(prompt) for m in proposers))
        references = [a.text for a in answers]
    final = inject_references(messages, references, AGGREGATE_AND_SYNTHESIZE_PROMPT)
    return (await aggregator.ainvoke(final)).text


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    latency = args.latency_ms / 1000
    proposers: list[BaseChatModel] = [
        SleepingChatModel(latency_s=latency) for _ in range(args.proposers)
    ]
    aggregator = SleepingChatModel(latency_s=latency)
    graph = build_moa_graph(proposers=proposers, aggregator=aggregator).compile()
    context = MoAContext(rounds=args.rounds, proposers=["bench:p"] * args.proposers)
    inputs = {"messages": [HumanMessage("question")]}

    async def graph_run() -> None:
        await graph.ainvoke(inputs, context=context)

    async def plain_run() -> None:
        await plain_asyncio_moa(proposers, aggregator, args.rounds, "question")

    def measured_path() -> float:
        layers = zip(*(m.durations for m in proposers), strict=True)
        return sum(max(layer) for layer in layers) + sum(aggregator.durations)

    walls: dict[str, list[float]] = {"graph": [], "plain_asyncio": []}
    ratios: dict[str, list[float]] = {"graph": [], "plain_asyncio": []}
    await graph_run()  # warm-up: imports, first compile of schemas
    await plain_run()
    for _ in range(args.runs):
        for name, run in (("graph", graph_run), ("plain_asyncio", plain_run)):
            for model in [*proposers, aggregator]:
                model.durations.clear()
            start = time.perf_counter()
            await run()
            wall = time.perf_counter() - start
            walls[name].append(wall)
            ratios[name].append(wall / measured_path())

    nominal = (args.rounds + 1) * latency
    median = {name: statistics.median(values) for name, values in walls.items()}
    vs_measured = {name: statistics.median(values) for name, values in ratios.items()}
    return {
        "proposers": args.proposers,
        "rounds": args.rounds,
        "latency_ms": args.latency_ms,
        "runs": args.runs,
        "critical_path_nominal_s": round(nominal, 4),
        "graph_median_s": round(median["graph"], 4),
        "plain_asyncio_median_s": round(median["plain_asyncio"], 4),
        "graph_overhead_ms_vs_plain": round((median["graph"] - median["plain_asyncio"]) * 1e3, 2),
        "graph_vs_measured_critical_path": round(vs_measured["graph"], 4),
        "plain_asyncio_vs_measured_critical_path": round(vs_measured["plain_asyncio"], 4),
        "graph_vs_nominal_critical_path": round(median["graph"] / nominal, 4),
        "plain_asyncio_vs_nominal_critical_path": round(median["plain_asyncio"] / nominal, 4),
        "graph_vs_plain_asyncio": round(median["graph"] / median["plain_asyncio"], 4),
        "target": 1.03,
        "within_target": vs_measured["graph"] <= 1.03,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=100.0, help="per call, > 0")
    parser.add_argument("--runs", type=int, default=20)
    print(json.dumps(asyncio.run(measure(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
