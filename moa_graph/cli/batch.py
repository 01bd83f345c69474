"""``moa-graph batch INPUT -o OUTPUT``: MoA over a file of prompts, resumable.

Exit status: 0 when every row is ok (or the failures stayed within ``--max-failures``), 1 when
rows failed, 2 for bad usage or settings.
"""

import argparse
import datetime
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from moa_graph.batch.estimate import estimate
from moa_graph.batch.progress import Progress
from moa_graph.batch.records import error_type
from moa_graph.batch.rows import Fields, InputError, Row, count_rows, read_rows, select_rows
from moa_graph.batch.runner import BatchRunner, PairExecutor, StopRule
from moa_graph.cli.options import add_call_arguments, context_from
from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.structured import load_answer_schema
from moa_graph.sync import run_sync
from moa_graph.usage import read_prices, sum_costs, total_usage
from moa_graph.versions import versions


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``batch`` and its options to the `commands` of the main parser."""
    batch = commands.add_parser(
        "batch",
        parents=parents,
        help="answer every row of a file; resumable",
        description="MoA over a JSONL, CSV or Parquet file: one record per row and sample, "
        "written as rows finish. Re-running the same command resumes.",
    )
    add = batch.add_argument
    add("input", help="JSONL, CSV or Parquet file of rows, or '-' for JSONL on stdin")
    add("-o", "--output", required=True, help="JSONL (default) or .parquet file")
    add("--prompt-field", help="field of the prompt (default: prompt, instruction or question)")
    add("--messages-field", help="field of an OpenAI-style message list instead")
    add("--id-field", default="id", help="field of the row id (default: id, else the row number)")
    add("--samples", type=int, default=1, help="answers per row (default 1)")
    add("--concurrency", type=int, default=16, help="rows in flight (default 16)")
    add_call_arguments(batch)
    add("--limit", type=int, help="only the first N rows")
    add("--shard", metavar="I/K", help="only rows whose number %% K == I")
    add(
        "--max-failures",
        metavar="N|P%",
        help="stop once more than N rows (or P%% of the rows run) failed; up to that the exit "
        "status stays 0",
    )
    add("--fail-fast", action="store_true", help="stop at the first failed row")
    add("--retry-failed", action="store_true", help="redo rows that failed before")
    add(
        "--schema",
        metavar="FILE.json|module:Model",
        help="typed rows: every answer is an object of this JSON Schema (a file) or Pydantic "
        "model (imported from the working directory), validated; one that does not fit is an "
        "error row",
    )
    add("--dry-run", action="store_true", help="count calls and estimate tokens and cost")
    add("--no-progress", action="store_true", help="no progress display")
    add(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run the rows on Ray actors: no ADDRESS starts a local cluster, 'auto' or "
        "'ray://HOST:PORT' joins one (needs the 'ray' extra)",
    )
    add("--ray-actors", type=int, help="Ray actors (default: the cluster's CPUs)")
    add(
        "--ray-shared-limits",
        action="store_true",
        help="one --rpm limiter for the whole cluster instead of a share per actor",
    )


def run(args: argparse.Namespace) -> int:
    """Run the batch the parsed `args` describe; return the exit status.

    Raises:
        MoAConfigError: Bad options, input or output (exit status 2).
    """
    schema = load_answer_schema(args.schema) if args.schema else None
    context = context_from(args)
    if schema is not None:
        context = schema.context_for(context)
    fields = Fields(prompt=args.prompt_field, messages=args.messages_field, id=args.id_field)
    shard = _shard(args.shard)
    prices = read_prices(args.prices) if args.prices else None
    if args.input != "-" and not Path(args.input).is_file():
        raise MoAConfigError(f"input {args.input} not found")
    total = count_rows(args.input, args.limit, shard)
    if total == 0:
        raise MoAConfigError(f"input {args.input} has no rows: nothing to do")
    rows = select_rows(read_rows(args.input, fields), args.limit, shard)
    if args.dry_run:
        print(json.dumps(estimate(context, rows, args.samples, prices), indent=2))
        return 0
    stop = StopRule(max_failures=0) if args.fail_fast else _stop_rule(args.max_failures)
    executor = _ray_executor(args, context, prices) if args.ray else None
    try:
        runner = BatchRunner(
            context=context, samples=args.samples, concurrency=args.concurrency,
            output=args.output, retry_failed=args.retry_failed, prices=prices, stop=stop,
            executor=executor, schema=schema,
        )  # fmt: skip
    except BaseException:
        if executor is not None:
            executor.close()
        raise
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    try:
        pairs = None if total is None else total * args.samples
        with Progress(runner.stats, pairs, enabled=not args.no_progress) as progress:
            run_sync(_consume(runner, rows, progress))
    except KeyboardInterrupt:
        # Stopped (Ctrl-C, SIGTERM): the runs in flight were cancelled, the output holds whole
        # records only; the manifest says so and the same command goes on where this stopped.
        runner.stats.stopped = "interrupted"
        counts = _write_manifest(runner, args, started)
        print(
            f"moa-graph: batch interrupted: {runner.stats.ok} rows done in this run, "
            f"{counts['ok']} ok in {args.output}; run the same command again to "
            "resume (finished rows are kept, the others are asked again)",
            file=sys.stderr,
        )
        raise
    finally:
        if executor is not None:
            executor.close()
    assert runner.store is not None
    counts = _write_manifest(runner, args, started)
    stats = runner.stats
    if stats.ok + stats.failed + stats.skipped == 0:
        raise MoAConfigError(f"input {args.input} has no rows: nothing to do")
    unread = counts["unread"]
    print(
        f"moa-graph: batch {'stopped early after ' + stats.stopped if stats.stopped else 'done'}: "
        f"{stats.ok} ok"
        + (f" ({stats.degraded} from fewer proposals than asked)" if stats.degraded else "")
        + f", {stats.failed} failed, {stats.skipped} already done; output has "
        f"{counts['ok']} ok and {counts['error']} error records: {runner.store.output} "
        f"(manifest {runner.store.manifest})"
        + (f". {unread} rows could not be read from the input (their records say why): fix "
           "the file and run again, those rows are read anew" if unread else "")
        + (". Re-run with --retry-failed to redo the failed runs"
           if counts["error"] > unread else ""),
        file=sys.stderr,
    )  # fmt: skip
    if stats.stopped:
        return 1
    tolerated = stop.max_failures is not None or stop.max_failure_rate is not None
    return 1 if counts["error"] and not tolerated else 0


def _ray_executor(
    args: argparse.Namespace, context: MoAContext, prices: dict[str, Any] | None
) -> PairExecutor:
    try:
        from moa_graph.batch.ray_executor import RayPairs
    except ImportError as exc:
        raise MoAConfigError(f"--ray needs Ray ({exc}): pip install 'moa-graph[ray]'") from None
    actors = args.ray_actors
    per_actor = math.ceil(args.concurrency / actors) if actors else 64
    executor = RayPairs(
        context, prices, address=None if args.ray == "local" else args.ray, actors=actors,
        per_actor=per_actor, shared_limits=args.ray_shared_limits,
    )  # fmt: skip
    nodes = executor.nodes()
    print(f"moa-graph: {len(nodes)} Ray actors on {len(set(nodes))} node"
          f"{'s' * (len(set(nodes)) > 1)}", file=sys.stderr)  # fmt: skip
    return executor


async def _consume(runner: BatchRunner, rows: Iterator[Row], progress: Progress) -> None:
    async for _ in runner.run(rows):
        progress.update()


def _write_manifest(runner: BatchRunner, args: argparse.Namespace, started: str) -> dict[str, int]:
    assert runner.store is not None
    records = list(runner.store.records())
    counts = {
        "ok": sum(r["status"] == "ok" for r in records),
        "error": sum(r["status"] == "error" for r in records),
        "unread": sum(error_type(r) == InputError.__name__ for r in records),
    }
    costs: list[float | None] = [r.get("cost_usd") for r in records if r["status"] == "ok"]
    runner.store.write_manifest(
        {
            "input": str(args.input),
            "output": str(runner.store.output),
            "settings_hash": runner.settings_hash,
            "settings": runner.settings,
            "samples": args.samples,
            "limits": {
                "rpm": runner.context.rpm,
                "tpm": runner.context.tpm,
                "retries": runner.context.retries,
            },
            "records": {"ok": counts["ok"], "error": counts["error"]},
            "this_run": {
                "ok": runner.stats.ok,
                "failed": runner.stats.failed,
                "resumed": runner.stats.skipped,
                "stopped": runner.stats.stopped,
            },
            "usage": total_usage(r.get("usage") for r in records),
            "cost_usd": sum_costs(costs) if costs else 0.0,
            "started": started,
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "versions": versions(),
        }
    )
    return counts


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
        if not 0 <= index < count:
            raise ValueError(text)
    except ValueError:
        raise MoAConfigError(
            f"--shard {text!r}: write it as I/K with 0 <= I < K, e.g. 0/4"
        ) from None
    return index, count


def _stop_rule(text: str | None) -> StopRule:
    if text is None:
        return StopRule()
    try:
        if text.endswith("%"):
            return StopRule(max_failure_rate=float(text[:-1]) / 100)
        return StopRule(max_failures=int(text))
    except ValueError:
        raise MoAConfigError(
            f"--max-failures {text!r}: give a count (10) or a percentage (5%)"
        ) from None
