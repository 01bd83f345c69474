"""The ``moa-graph`` command: ask, chat, batch, serve and eval, with progress on stderr.

Exit status: 0 on success, 2 for bad usage or settings, 1 when the run fails.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, cast

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph

from moa_graph.batch import cli as batch_cli
from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.eval import cli as eval_cli
from moa_graph.graph import build_moa_graph
from moa_graph.local_server import BASE_URL_ENV, local_base_url
from moa_graph.moa import run_usage
from moa_graph.presets import PRESET_DESCRIPTIONS, PRESETS
from moa_graph.state import InputState, Proposal
from moa_graph.sync import run_sync


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: ``sys.argv[1:]``) and return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(format="moa-graph: %(message)s", stream=sys.stderr)
    logging.getLogger("moa_graph").setLevel(logging.INFO)
    try:
        if args.command == "batch":
            return batch_cli.run(args, _context(args, **batch_cli.call_settings(args)))
        if args.command == "eval":
            return eval_cli.run(args, _settings(args, **batch_cli.call_settings(args)))
        if args.command == "serve":
            return _serve(args.host, args.port, args.workers)
        context = _context(args)
        if args.command == "ask":
            prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
            if not prompt.strip():
                raise MoAConfigError("the prompt is empty: pass text, or '-' to read stdin")
            run_sync(_ask(prompt, context, args))
        else:
            run_sync(_chat(context, args))
    except MoAConfigError as exc:
        return _fail(2, f"error: {exc}", args.debug)
    except KeyboardInterrupt:
        return _fail(1, "interrupted", debug=False)
    except Exception as exc:
        return _fail(1, f"run failed: {type(exc).__name__}: {exc}", args.debug)
    return 0


def _parser() -> argparse.ArgumentParser:
    models = argparse.ArgumentParser(add_help=False)
    models.add_argument(
        "--context",
        metavar="FILE.json",
        type=Path,
        help="MoAContext settings as a JSON object (any field, model specs as objects); "
        "the options below override it",
    )
    models.add_argument(
        "--proposer",
        action="append",
        metavar="SPEC",
        help="proposer, repeatable (default: 3 x local:smollm2). A model spec "
        "'provider:model', optionally followed by key=value settings in the same quoted "
        "argument: n (samples), temperature, max_tokens, timeout_s, system_prompt, label; "
        "other keys go to the model (e.g. top_p=0.9). Example: "
        "--proposer 'local:smollm2 n=3 temperature=1.0'",
    )
    models.add_argument(
        "--aggregator", metavar="SPEC", help="aggregator model spec (same form as --proposer)"
    )
    models.add_argument("--rounds", type=int, help="proposer layers before the aggregator")
    models.add_argument("--temperature", type=float, help="sampling temperature")
    models.add_argument("--max-tokens", type=int, help="most tokens per model call")
    models.add_argument("--debug", action="store_true", help="show tracebacks")
    common = argparse.ArgumentParser(add_help=False, parents=[models])
    common.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a named MoA shape; the options below override it. "
        + "; ".join(f"{name}: {text}" for name, text in PRESET_DESCRIPTIONS.items()),
    )
    common.add_argument(
        "--mode",
        dest="aggregator_mode",
        choices=["synthesize", "select", "vote", "sequential"],
        help="how the proposals become the answer (default synthesize)",
    )
    common.add_argument(
        "--seed", type=int, help="derive every call's seed from this (default: fresh seeds)"
    )
    common.add_argument(
        "--first-k", type=int, help="go on once this many proposers of a layer have answered"
    )
    common.add_argument(
        "--show-proposals", action="store_true", help="print every proposal to stderr as it arrives"
    )
    parser = argparse.ArgumentParser(
        prog="moa-graph",
        description="Mixture-of-Agents: several proposers answer, an aggregator synthesizes.",
        epilog="Settings not given fall back to MOA_* environment variables, then defaults.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", parents=[common], help="answer one prompt")
    ask.add_argument("prompt", help="the prompt, or '-' to read it from stdin")
    ask.add_argument(
        "--json", action="store_true", help="print one JSON object: answer, proposals, usage"
    )
    commands.add_parser("chat", parents=[common], help="multi-turn chat in the terminal")
    serve = commands.add_parser(
        "serve",
        help="serve MoA as an OpenAI-compatible API (needs the 'serve' extra)",
        description="POST /v1/chat/completions and GET /v1/models on HOST:PORT; model 'moa' "
        "uses the MOA_* settings. MOA_API_KEY sets a bearer key. A request may set only the "
        "MoA fields the operator allows (MOA_SERVE_ALLOW_FIELDS, MOA_SERVE_ALLOW_MODELS), "
        "within budgets (MOA_SERVE_MAX_ROUNDS, _CALLS, _TOKENS, _TIMEOUT_S, _MESSAGES, "
        "_BODY_BYTES).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (uvicorn's workers; default 1). rpm/tpm limits are divided "
        "among them; an embedded model is started once and shared",
    )
    serve.add_argument("--debug", action="store_true", help="show tracebacks")
    batch_cli.add_arguments(
        commands.add_parser(
            "batch",
            parents=[common],
            help="answer every row of a file; resumable",
            description="MoA over a JSONL, CSV or Parquet file: one record per row and sample, "
            "written as rows finish. Re-running the same command resumes.",
        )
    )
    eval_cli.add_arguments(
        commands.add_parser(
            "eval",
            parents=[models],
            help="compare MoA variants and single models on a suite, with intervals and cost",
            description="Run every system on the same items, score them (exact answers or a "
            "judge), and print the table; --out keeps results.json, items.jsonl, summary.md "
            "and plot.png. The --proposer/--aggregator options are the models the presets use.",
        )
    )
    return parser  # fmt: skip


def _serve(host: str, port: int, workers: int) -> int:
    if workers < 1:
        raise MoAConfigError(f"--workers {workers}: give a whole number >= 1")
    try:
        import uvicorn

        from moa_graph.serving.catalog import (
            ASSISTANTS_FILE,
            WORKERS_ENV,
            local_models,
            served_models,
        )
    except ImportError as exc:
        raise MoAConfigError(
            f"moa-graph serve needs FastAPI and uvicorn ({exc}): pip install 'moa-graph[serve]'"
        ) from None
    os.environ[WORKERS_ENV] = str(workers)  # the workers divide rpm/tpm by it
    if workers > 1 and not os.environ.get(BASE_URL_ENV):
        # One embedded server for all workers (each would otherwise start its own).
        catalog = served_models(Path(os.environ.get("MOA_SERVE_ASSISTANTS", ASSISTANTS_FILE)))
        local = sorted(local_models(catalog))
        if len(local) > 1:
            raise MoAConfigError(
                f"--workers {workers} shares one embedded model, but the served models use "
                f"{local}: serve one, or run your own server and set {BASE_URL_ENV}"
            )
        if local:
            os.environ[BASE_URL_ENV] = local_base_url(local[0])
    uvicorn.run(
        "moa_graph.serving.app:app", host=host, port=port, workers=workers, log_level="warning"
    )
    return 0


def _context(args: argparse.Namespace, **more: Any) -> MoAContext:
    """Build the settings: the --context file, then the options, under the --preset's shape."""
    settings = _settings(args, **more)
    if args.preset:
        return MoAContext.preset(args.preset, **settings)
    return MoAContext(**settings)


def _settings(args: argparse.Namespace, **more: Any) -> dict[str, Any]:
    """Return the MoAContext fields the --context file and the options give (not validated)."""
    settings: dict[str, Any] = _read_context_file(args.context) if args.context else {}
    settings.update(more)
    given = {
        "proposers": args.proposer,
        "aggregator": args.aggregator,
        "rounds": args.rounds,
        "aggregator_mode": getattr(args, "aggregator_mode", None),
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "seed": getattr(args, "seed", None) if args.command != "eval" else None,
        "first_k": getattr(args, "first_k", None),
    }
    settings.update({name: value for name, value in given.items() if value is not None})
    return settings


def _read_context_file(path: Path) -> dict[str, Any]:
    try:
        settings = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MoAConfigError(f"--context {path}: cannot read a JSON object: {exc}") from None
    known = {f.name for f in fields(MoAContext)}
    if not isinstance(settings, dict) or not set(settings) <= known:
        unknown = sorted(set(settings) - known) if isinstance(settings, dict) else settings
        raise MoAConfigError(
            f"--context {path}: unknown settings {unknown}; MoAContext takes {sorted(known)}"
        )
    return settings


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
        "calls_without_usage": sum(p["usage"] is None for p in proposals)
        + (aggregation["calls"] if aggregation["usage"] is None else 0),
    }


def _progress(text: str) -> None:
    print(f"moa-graph: {text}", file=sys.stderr, flush=True)


def _fail(status: int, message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"moa-graph: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
