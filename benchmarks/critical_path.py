"""Orchestration overhead of the MoA graph, with simulated-latency models (no network).

Runs the graph with chat models that only sleep, and prints JSON comparing its wall time with
the critical path (per layer the slowest proposer, plus the aggregator) and with a plain
asyncio implementation of the same MoA. Target: 4 proposers x 2 rounds at 100 ms per call
within 1.03x of the critical path.

A third figure, "langgraph_floor", runs a LangGraph graph of the same shape (layer node, one
Send per proposer, join node, loop, aggregator) whose nodes only sleep: no chat models and no
MoA code, so it shows what LangGraph itself costs on this machine.

Two critical paths are reported. "nominal" is (rounds + 1) x latency. "measured" adds up the
models' own sleep durations as they happened (per layer the longest, plus the aggregator's):
an asyncio timer fires up to about a millisecond late, which no implementation avoids, so the
measured path is what the orchestration is judged against.

    python benchmarks/critical_path.py [--proposers 4] [--rounds 2] [--latency-ms 100] [--runs 20]
"""

import argparse
import asyncio
import json
import operator
import statistics
import time
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.graph import START, StateGraph
from langgraph.types import Send
from pydantic import Field

from moa_graph import AGGREGATE_AND_SYNTHESIZE_PROMPT, MoAContext, build_moa_graph
from moa_graph.references import inject_references


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


class _FloorState(TypedDict, total=False):
    layer: int
    answers: Annotated[list[str], operator.add]


def langgraph_floor(proposers: int, rounds: int, latency_s: float) -> Any:
    """Compile a graph of the MoA graph's shape whose nodes only sleep."""

    async def layer(state: _FloorState) -> _FloorState:
        return {"layer": state.get("layer", 0) + 1}

    async def proposer(_: object) -> _FloorState:
        await asyncio.sleep(latency_s)
        return {"answers": ["an answer"]}

    async def join(state: _FloorState) -> _FloorState:
        return {}

    async def aggregator(state: _FloorState) -> _FloorState:
        await asyncio.sleep(latency_s)
        return {}

    builder = StateGraph(_FloorState)
    for node in (layer, proposer, join, aggregator):
        builder.add_node(node.__name__, node)
    builder.add_edge(START, "layer")
    builder.add_conditional_edges(
        "layer", lambda s: [Send("proposer", {}) for _ in range(proposers)], ["proposer"]
    )
    builder.add_edge("proposer", "join")
    builder.add_conditional_edges(
        "join", lambda s: "layer" if s["layer"] < rounds else "aggregator", ["layer", "aggregator"]
    )
    builder.set_finish_point("aggregator")
    return builder.compile()


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

    floor = langgraph_floor(args.proposers, args.rounds, latency)

    async def floor_run() -> None:
        await floor.ainvoke({"layer": 0})

    def measured_path() -> float:
        layers = zip(*(m.durations for m in proposers), strict=True)
        return sum(max(layer) for layer in layers) + sum(aggregator.durations)

    runs = {"graph": graph_run, "plain_asyncio": plain_run, "langgraph_floor": floor_run}
    walls: dict[str, list[float]] = {name: [] for name in runs}
    # The floor calls no models, so it has no measured critical path of its own.
    ratios: dict[str, list[float]] = {"graph": [], "plain_asyncio": []}
    for run in runs.values():
        await run()  # warm-up: imports, first compile of schemas
    for _ in range(args.runs):
        for name, run in runs.items():
            for model in [*proposers, aggregator]:
                model.durations.clear()
            start = time.perf_counter()
            await run()
            wall = time.perf_counter() - start
            walls[name].append(wall)
            if name in ratios:
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
        "langgraph_floor_median_s": round(median["langgraph_floor"], 4),
        "langgraph_floor_vs_nominal_critical_path": round(median["langgraph_floor"] / nominal, 4),
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
