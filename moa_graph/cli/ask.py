"""``moa-graph ask`` and ``moa-graph chat``: one answer, or a conversation, streamed.

The answer goes to stdout as it is written; the layers' progress, how the answer was made and
the token totals go to stderr (`moa_graph.answer_stream`, `moa_graph.run_summary`).
"""

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import Any

from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph

from moa_graph.answer_stream import LayerStarted, ProposalDone, RunFinished, astream_answer
from moa_graph.cli.options import context_from
from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.graph import build_moa_graph
from moa_graph.run_summary import RunSummary, summarize
from moa_graph.state import FIRST_STAGE, InputState, Proposal
from moa_graph.sync import run_sync


def add_parsers(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``ask`` and ``chat`` to the `commands` of the main parser."""
    ask = commands.add_parser("ask", parents=parents, help="answer one prompt")
    ask.add_argument("prompt", help="the prompt, or '-' to read it from stdin")
    ask.add_argument(
        "--json", action="store_true", help="print one JSON object: answer, proposals, usage"
    )
    chat = commands.add_parser("chat", parents=parents, help="multi-turn chat in the terminal")
    for command in (ask, chat):
        command.add_argument(
            "--show-proposals", action="store_true",
            help="print every proposal to stderr as it arrives",
        )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Answer the prompt (``ask``) or hold the conversation (``chat``); return 0.

    Raises:
        MoAConfigError: Bad settings or an empty prompt, before any model call.
    """
    context = context_from(args)
    if args.command == "ask":
        prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
        if not prompt.strip():
            raise MoAConfigError("the prompt is empty: pass text, or '-' to read stdin")
        run_sync(_ask(prompt, context, args))
    else:
        run_sync(_chat(context, args))
    return 0


async def _ask(prompt: str, context: MoAContext, args: argparse.Namespace) -> None:
    graph = build_moa_graph().compile(name="moa")
    inputs: InputState = {"messages": [HumanMessage(prompt)]}
    if args.json:
        result = await graph.ainvoke(inputs, context=context)
        summary = summarize(result)
        print(json.dumps({**summary, "proposals": result["proposals"]}, indent=2,
                         ensure_ascii=False))  # fmt: skip
        return
    await _stream_turn(graph, inputs, context, RunnableConfig(), args.show_proposals)


async def _chat(context: MoAContext, args: argparse.Namespace) -> None:
    graph = build_moa_graph().compile(checkpointer=InMemorySaver(), name="moa")
    config = RunnableConfig(configurable={"thread_id": str(uuid.uuid4())})
    print("Mixture-of-Agents chat. Empty line or Ctrl-D to quit.", file=sys.stderr)
    while True:
        try:
            line = await asyncio.to_thread(input, ">>> ")
        except EOFError:
            return
        if not line.strip():
            return
        turn: InputState = {"messages": [HumanMessage(line)]}
        await _stream_turn(graph, turn, context, config, args.show_proposals)


async def _stream_turn(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    inputs: InputState,
    context: MoAContext,
    config: RunnableConfig,
    show_proposals: bool,
) -> None:
    """Stream the answer to stdout and the layers' progress and what the run did to stderr."""
    start = time.perf_counter()
    async for event in astream_answer(graph, inputs, config, context=context, progress=True):
        if isinstance(event, AIMessageChunk):
            print(event.text, end="", flush=True)
        elif isinstance(event, LayerStarted):
            where = "first stage" if event.layer == FIRST_STAGE else f"layer {event.layer}"
            _progress(
                f"{where}/{context.rounds}: proposers running"
                if event.layer != FIRST_STAGE
                else "cascade first stage: proposers running"
            )
        elif isinstance(event, ProposalDone):
            _progress(_describe(event.record))
            if show_proposals and event.record["content"]:
                print(event.record["content"].strip() + "\n", file=sys.stderr)
        elif isinstance(event, RunFinished):
            summary = event.summary
    print(flush=True)
    _progress(_made_by(summary))
    usage, unreported = summary["usage"], summary["calls_without_usage"]
    _progress(
        f"answered in {time.perf_counter() - start:.1f} s, {summary['calls']} model calls, "
        f"{usage['input_tokens']} tokens in, {usage['output_tokens']} out"
        + (f" ({unreported} calls reported no usage)" if unreported else "")
    )
    if summary["cut_off"]:
        _progress(
            f"warning: the answer stopped at max_tokens ({context.max_tokens}) and may be cut "
            "off: raise --max-tokens"
        )
    if summary["proposals_cut_off"]:
        _progress(f"{summary['proposals_cut_off']} proposals stopped at max_tokens")
    if summary["degraded"]:
        _progress(
            f"warning: the answer was made from {summary['proposals_answered']} of "
            f"{summary['proposals_asked']} proposals (the others failed; see above)"
        )


def _made_by(summary: RunSummary) -> str:
    """One line on how the answer was made: the aggregator's calls, a vote, a cascade."""
    aggregation = summary["aggregation"]
    mode = aggregation["mode"]
    if mode == "cascade":
        return (f"the cascade's first stage answered: {summary['proposals_answered']} answers "
                "agreed, no layer or aggregator ran")  # fmt: skip
    if aggregation["calls"] == 0:
        return (
            f"{mode}: proposal {(aggregation['chosen'] or 0) + 1} is the answer, no aggregator call"
        )
    fallback = f" ({aggregation['fallback']})" if aggregation["fallback"] else ""
    calls = aggregation["calls"]
    return f"aggregator {aggregation['model']}: {mode}, {calls} call{'s' * (calls > 1)}{fallback}"


def _describe(p: Proposal) -> str:
    layer = "first stage" if p["layer"] == FIRST_STAGE else f"layer {p['layer']}"
    where = f"  {layer} proposer {p['index'] + 1} {p['model']}"
    if p["status"] == "cancelled":
        return f"{where}: cancelled after {p['latency_s']:.1f} s (first_k)"
    if p["error"]:
        return f"{where}: {p['status']} after {p['latency_s']:.1f} s: {p['error']}"
    tokens = f", {p['usage']['output_tokens']} tokens" if p["usage"] else ""
    return f"{where}: done in {p['latency_s']:.1f} s{tokens}"


def _progress(text: str) -> None:
    print(f"moa-graph: {text}", file=sys.stderr, flush=True)
