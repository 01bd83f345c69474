"""CPU per MoA run: moa-graph against a bare LangGraph graph and plain asyncio, side by side.

With a fast local server (vLLM, llama.cpp) a run waits little on the network and the
machinery's CPU becomes the ceiling. Every system here calls the same instant chat models
(`critical_path.SleepingChatModel` at 0 s), `--in-flight` runs at a time, and the figure is the
whole process's CPU time (user + system) divided by the runs:

- ``asyncio``: the reference implementation's shape, `asyncio.gather` of the proposers per
  layer, then the aggregator (`critical_path.plain_asyncio_moa`);
- ``langgraph``: a bare LangGraph graph of the same shape: a node per layer that maps the
  question (with the previous layer's answers as references) to one `Send` per proposer, a
  proposer node with an `operator.add` reducer, a loop, and an aggregator node;
- ``moa-graph``: ``build_moa_graph(proposers=..., aggregator=...).compile().ainvoke``.

It prints JSON: per system and shape (the default, and ``--rounds 2``), CPU ms per run, runs
per CPU second, and moa-graph's ratio to the bare LangGraph graph.

    python benchmarks/cpu_per_run.py [--proposers 3] [--in-flight 400] [--batches 5]
"""

import argparse
import asyncio
import json
import operator
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

from critical_path import SleepingChatModel, plain_asyncio_moa
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.graph import START, StateGraph
from langgraph.types import Send

from moa_graph import AGGREGATE_AND_SYNTHESIZE_PROMPT, MoAContext, build_moa_graph
from moa_graph.references import inject_references


class _BareState(TypedDict, total=False):
    messages: list[BaseMessage]
    layer: int
    answers: Annotated[list[tuple[int, str]], operator.add]
    answer: str


def bare_langgraph(proposers: list[BaseChatModel], aggregator: BaseChatModel, rounds: int) -> Any:
    """Compile the bare LangGraph graph of MoA's shape (see the module docstring)."""

    def prompt(state: _BareState, layer: int) -> list[BaseMessage]:
        references = [text for k, text in state.get("answers", []) if k == layer - 1]
        messages = state["messages"]
        if not references:
            return messages
        return inject_references(messages, references, AGGREGATE_AND_SYNTHESIZE_PROMPT)

    async def layer(state: _BareState) -> _BareState:
        return {"layer": state.get("layer", 0) + 1}

    def fan_out(state: _BareState) -> list[Send]:
        messages = prompt(state, state["layer"])
        return [
            Send("proposer", {"index": i, "layer": state["layer"], "messages": messages})
            for i in range(len(proposers))
        ]

    async def proposer(task: dict[str, Any]) -> _BareState:
        reply = await proposers[task["index"]].ainvoke(task["messages"])
        return {"answers": [(task["layer"], reply.text)]}

    async def join(state: _BareState) -> _BareState:
        return {}

    async def aggregate(state: _BareState) -> _BareState:
        reply = await aggregator.ainvoke(prompt(state, rounds + 1))
        return {"answer": reply.text}

    builder = StateGraph(_BareState)
    for node in (layer, proposer, join, aggregate):
        builder.add_node(node.__name__, node)
    builder.add_edge(START, "layer")
    builder.add_conditional_edges("layer", fan_out, ["proposer"])
    builder.add_edge("proposer", "join")
    builder.add_conditional_edges(
        "join", lambda s: "layer" if s["layer"] < rounds else "aggregate", ["layer", "aggregate"]
    )
    builder.set_finish_point("aggregate")
    return builder.compile()


async def cpu_ms_per_run(run: Callable[[], Awaitable[Any]], in_flight: int, batches: int) -> float:
    """Median over `batches` of process CPU ms per run, `in_flight` runs at a time."""
    await asyncio.gather(*(run() for _ in range(min(in_flight, 50))))  # warm up
    figures = []
    for _ in range(batches):
        start = time.process_time()
        await asyncio.gather(*(run() for _ in range(in_flight)))
        figures.append((time.process_time() - start) * 1000 / in_flight)
    return statistics.median(figures)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    proposers: list[BaseChatModel] = [
        SleepingChatModel(latency_s=0.0) for _ in range(args.proposers)
    ]
    aggregator = SleepingChatModel(latency_s=0.0)
    question = [HumanMessage("question")]
    moa = build_moa_graph(proposers=proposers, aggregator=aggregator).compile()
    shapes = {}
    for rounds in (1, 2):
        bare = bare_langgraph(proposers, aggregator, rounds)
        context = MoAContext(rounds=rounds, proposers=["bench:p"] * args.proposers)
        runs: dict[str, Callable[[], Awaitable[Any]]] = {
            "asyncio": lambda r=rounds: plain_asyncio_moa(proposers, aggregator, r, "question"),
            "langgraph": lambda b=bare: b.ainvoke({"messages": question}),
            "moa-graph": lambda c=context: moa.ainvoke({"messages": question}, context=c),
        }
        figures = {}
        for name, run in runs.items():
            ms = await cpu_ms_per_run(run, args.in_flight, args.batches)
            figures[name] = {"cpu_ms_per_run": round(ms, 3), "runs_per_cpu_s": round(1000 / ms)}
        figures["moa_graph_vs_langgraph"] = round(
            figures["moa-graph"]["cpu_ms_per_run"] / figures["langgraph"]["cpu_ms_per_run"], 2
        )
        shapes[f"rounds={rounds}"] = figures
    return {
        "proposers": args.proposers, "in_flight": args.in_flight, "batches": args.batches,
        "shapes": shapes,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proposers", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=400)
    parser.add_argument("--batches", type=int, default=5)
    print(json.dumps(asyncio.run(measure(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
