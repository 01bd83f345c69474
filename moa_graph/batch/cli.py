"""``moa-graph batch INPUT -o OUTPUT``: MoA over a file of prompts, resumable.

Exit status: 0 when every row is ok (or the failures stayed within ``--max-failures``), 1 when
rows failed, 2 for bad usage or settings.
"""

import argparse
import datetime
import itertools
import json
import math
import platform
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from moa_graph.batch.progress import Progress
from moa_graph.batch.rows import Fields, Row, read_rows
from moa_graph.batch.runner import BatchRunner, PairExecutor, StopRule
from moa_graph.budget import most_calls
from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.moa import total_usage
from moa_graph.sync import run_sync


def add_arguments(batch: argparse.ArgumentParser) -> None:
    """Add the batch command's own arguments to its parser."""
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


def add_call_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of how calls are made (rates, retries, timeout, prices), shared with eval."""
    add = parser.add_argument
    add(
        "--rpm",
        action="append",
        default=[],
        metavar="SPEC=N",
        help="requests per minute for a provider or model, e.g. openai=600 (repeatable)",
    )
    add(
        "--tpm",
        action="append",
        default=[],
        metavar="SPEC=N",
        help="tokens per minute for a provider or model (repeatable)",
    )
    add("--retries", type=int, help="retries per call on 429, 5xx and timeouts (default 2)")
    add(
        "--timeout",
        type=float,
        help="seconds per proposer call attempt, counted once it is admitted (default 120)",
    )
    add(
        "--prices",
        type=Path,
        metavar="FILE",
        help='JSON of USD per million tokens by model: {"openai:gpt-4o-mini": {"input": 0.15, '
        '"output": 0.6}}',
    )


def call_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the MoAContext fields the batch options set (rates, retries, timeout)."""
    settings: dict[str, Any] = {}
    for name in ("rpm", "tpm"):
        if getattr(args, name):
            settings[name] = dict(_rate(name, text) for text in getattr(args, name))
    if args.retries is not None:
        settings["retries"] = args.retries
    if args.timeout is not None:
        settings["proposer_timeout_s"] = args.timeout
    return settings


def run(args: argparse.Namespace, context: MoAContext) -> int:
    """Run the batch the parsed `args` describe; return the exit status.

    Raises:
        MoAConfigError: Bad options, input or output (exit status 2).
    """
    fields = Fields(prompt=args.prompt_field, messages=args.messages_field, id=args.id_field)
    shard = _shard(args.shard)
    prices = read_prices(args.prices) if args.prices else None
    total = _count_rows(args.input, args.limit, shard)
    rows = _select(read_rows(args.input, fields), args.limit, shard)
    if args.dry_run:
        print(json.dumps(_dry_run(context, rows, args.samples, prices), indent=2))
        return 0
    stop = StopRule(max_failures=0) if args.fail_fast else _stop_rule(args.max_failures)
    executor = _ray_executor(args, context, prices) if args.ray else None
    try:
        runner = BatchRunner(
            context=context, samples=args.samples, concurrency=args.concurrency,
            output=args.output, retry_failed=args.retry_failed, prices=prices, stop=stop,
            executor=executor,
        )  # fmt: skip
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        pairs = None if total is None else total * args.samples
        with Progress(runner.stats, pairs, enabled=not args.no_progress) as progress:
            run_sync(_consume(runner, rows, progress))
    finally:
        if executor is not None:
            executor.close()
    assert runner.store is not None
    counts = _write_manifest(runner, args, started)
    stats = runner.stats
    print(
        f"moa-graph: batch {'stopped early after ' + stats.stopped if stats.stopped else 'done'}: "
        f"{stats.ok} ok, {stats.failed} failed, {stats.skipped} already done; output has "
        f"{counts['ok']} ok and {counts['error']} error records: {runner.store.output} "
        f"(manifest {runner.store.manifest})"
        + (". Re-run with --retry-failed to redo the failed rows" if counts["error"] else ""),
        file=sys.stderr,
    )
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
    return RayPairs(
        context, prices, address=None if args.ray == "local" else args.ray, actors=actors,
        per_actor=per_actor, shared_limits=args.ray_shared_limits,
    )  # fmt: skip


async def _consume(runner: BatchRunner, rows: Iterator[Row], progress: Progress) -> None:
    async for _ in runner.run(rows):
        progress.update()


def _write_manifest(runner: BatchRunner, args: argparse.Namespace, started: str) -> dict[str, int]:
    assert runner.store is not None
    records = list(runner.store.records())
    counts = {
        "ok": sum(r["status"] == "ok" for r in records),
        "error": sum(r["status"] == "error" for r in records),
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
            "records": counts,
            "this_run": {
                "ok": runner.stats.ok,
                "failed": runner.stats.failed,
                "resumed": runner.stats.skipped,
                "stopped": runner.stats.stopped,
            },
            "usage": total_usage(r.get("usage") for r in records),
            "cost_usd": None if None in costs else round(sum(c or 0.0 for c in costs), 6),
            "started": started,
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "versions": versions(),
        }
    )
    return counts


def _dry_run(
    context: MoAContext, rows: Iterator[Row], samples: int, prices: dict[str, Any] | None
) -> dict[str, Any]:
    sizes = [sum(s.n for s in context.proposer_specs(k)) for k in range(1, context.rounds + 1)]
    per_run = most_calls(context.aggregator_mode, context.window_size, sizes)
    count = prompt_chars = 0
    for row in rows:
        count += 1
        prompt_chars += sum(len(str(m.get("content", ""))) for m in row.messages)
    runs = count * samples
    calls = runs * per_run
    # Upper bounds: every call writes max_tokens; later calls also read the references.
    output_tokens = calls * context.max_tokens
    referenced = runs * (sum(sizes[:-1]) * sizes[-1] + sizes[-1]) * context.max_tokens
    input_tokens = calls * (prompt_chars // max(count, 1)) // 4 + referenced
    return {
        "rows": count,
        "samples": samples,
        "runs": runs,
        "calls": calls,
        "calls_per_run": per_run,
        "input_tokens_at_most": input_tokens,
        "output_tokens_at_most": output_tokens,
        "cost_usd_at_most": _dry_cost(context, input_tokens, output_tokens, prices),
    }


def _dry_cost(
    context: MoAContext, input_tokens: int, output_tokens: int, prices: dict[str, Any] | None
) -> float | None:
    models = {s.name for k in range(1, context.rounds + 1) for s in context.proposer_specs(k)}
    models.add(context.aggregator_spec().name)
    if prices is None or not models <= set(prices):
        return None
    worst_in = max(float(prices[m]["input"]) for m in models)
    worst_out = max(float(prices[m]["output"]) for m in models)
    return round((input_tokens * worst_in + output_tokens * worst_out) / 1e6, 4)


def _select(rows: Iterator[Row], limit: int | None, shard: tuple[int, int] | None) -> Iterator[Row]:
    if limit is not None:
        rows = itertools.islice(rows, limit)
    if shard is not None:
        index, count = shard
        rows = (row for row in rows if row.index % count == index)
    return rows


def _count_rows(source: str, limit: int | None, shard: tuple[int, int] | None) -> int | None:
    """Count the input's rows for the progress display (None for stdin)."""
    if source == "-":
        return None
    path = Path(source)
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            total = int(pq.ParquetFile(path).metadata.num_rows)
        except (ImportError, OSError):
            return None
    elif path.is_file():
        with path.open(encoding="utf-8") as f:
            total = sum(1 for line in f if line.strip())
        total -= path.suffix.lower() == ".csv"  # the header
    else:
        return None
    if limit is not None:
        total = min(total, limit)
    if shard is not None:
        index, count = shard
        total = len(range(index, total, count))
    return total


def _rate(name: str, text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    try:
        if not sep or not key.strip():
            raise ValueError(text)
        return key.strip(), float(value)
    except ValueError:
        raise MoAConfigError(
            f"--{name} {text!r}: write it as SPEC=N, e.g. --{name} openai=600"
        ) from None


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


def read_prices(path: Path) -> dict[str, Any]:
    """Read a ``--prices`` file: USD per million input and output tokens by model.

    Raises:
        MoAConfigError: The file is missing or not of that shape.
    """
    try:
        prices = json.loads(path.read_text())
        for price in prices.values():
            float(price["input"]), float(price["output"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MoAConfigError(
            f"--prices {path}: expected {{model: {{'input': USD, 'output': USD}}}} per million "
            f"tokens ({exc})"
        ) from None
    return dict(prices)


def versions(*more: str) -> dict[str, str]:
    """Return the installed versions of moa-graph, its main dependencies, `more`, and Python."""
    names = ("moa-graph", "langgraph", "langchain-core", "langchain-openai", *more)
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {**found, "python": platform.python_version()}
