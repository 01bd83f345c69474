"""``moa-graph ask`` and ``moa-graph chat``: one answer, or a conversation, streamed.

The aggregator's tokens go to stdout; the layers' progress and the token totals to stderr.
"""

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import Any, cast

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph

from moa_graph.cli.options import context_from
from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.graph import build_moa_graph
from moa_graph.layers import made_calls, panel_status
from moa_graph.state import InputState, Proposal
from moa_graph.sync import run_sync
from moa_graph.usage import run_usage


def add_parsers(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``ask`` and ``chat`` to the `commands` of the main parser."""
    ask = commands.add_parser("ask", parents=parents, help="answer one prompt")
    ask.add_argument("prompt", help="the prompt, or '-' to read it from stdin")
    ask.add_argument(
        "--json", action="store_true", help="print one JSON object: answer, proposals, usage"
    )
    commands.add_parser("chat", parents=parents, help="multi-turn chat in the terminal")


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
        print(json.dumps(_summary(result), indent=2, ensure_ascii=False))
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
    """Stream the aggregator's tokens to stdout and the layers' progress to stderr."""
    start = time.perf_counter()
    final: dict[str, Any] = {}
    async for part in graph.astream(
        inputs, config, context=context, stream_mode=["messages", "tasks", "values"]
    ):
        mode, chunk = cast(tuple[str, Any], part)
        if mode == "messages":
            message, metadata = chunk
            if metadata.get("langgraph_node") == "aggregator":
                print(message.text, end="", flush=True)
        elif mode == "tasks":
            _report_task(chunk, context, show_proposals)
        else:
            final = chunk
    print(flush=True)
    summary = _summary(final)
    usage, unreported = summary["usage"], summary["calls_without_usage"]
    _progress(
        f"answered in {time.perf_counter() - start:.1f} s, {len(final['proposals'])} proposals, "
        f"{usage['input_tokens']} tokens in, {usage['output_tokens']} out"
        + (f" ({unreported} calls reported no usage)" if unreported else "")
    )
    if summary["degraded"]:
        _progress(
            f"warning: the answer was made from {summary['proposals_answered']} of "
            f"{summary['proposals_asked']} proposals (the others failed; see above)"
        )


def _report_task(event: dict[str, Any], context: MoAContext, show_proposals: bool) -> None:
    name, started = event["name"], "input" in event
    if name == "layer" and not started and event.get("result"):
        layer = dict(event["result"])["layer"]
        _progress(f"layer {layer}/{context.rounds}: proposers running")
    elif name == "proposer" and not started and event.get("result"):
        for record in dict(event["result"])["proposals"]:
            _progress(_describe(record))
            if show_proposals and record["content"]:
                print(record["content"].strip() + "\n", file=sys.stderr)
    elif name == "aggregator" and started:
        _progress(f"aggregator {context.aggregator_spec().name}: {context.aggregator_mode}")


def _describe(p: Proposal) -> str:
    where = f"  layer {p['layer']} proposer {p['index'] + 1} {p['model']}"
    if p["status"] == "cancelled":
        return f"{where}: cancelled after {p['latency_s']:.1f} s (first_k)"
    if p["error"]:
        return f"{where}: {p['status']} after {p['latency_s']:.1f} s: {p['error']}"
    tokens = f", {p['usage']['output_tokens']} tokens" if p["usage"] else ""
    return f"{where}: done in {p['latency_s']:.1f} s{tokens}"


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    aggregation = result["aggregation"]
    proposals = result["proposals"]
    usage = run_usage(result)
    return {
        "answer": result["messages"][-1].text,
        "proposals": proposals,
        "aggregation": aggregation,
        "usage": usage or {"input_tokens": 0, "output_tokens": 0},
        # e.g. the embedded server reports no usage for a streamed answer
        "calls_without_usage": sum(p["usage"] is None for p in made_calls(proposals))
        + (aggregation["calls"] if aggregation["usage"] is None else 0),
        **panel_status(proposals),
    }


def _progress(text: str) -> None:
    print(f"moa-graph: {text}", file=sys.stderr, flush=True)
