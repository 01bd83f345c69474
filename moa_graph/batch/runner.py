"""Run MoA over many rows: a bounded worker pool, per-row records, resume, stop rules.

Rows are read lazily and at most ``concurrency`` (row, sample) runs are in flight, each one
``graph.astream`` (the graph's own proposer fan-out is untouched, unlike ``abatch`` with
``max_concurrency``, which would also cap it: docs/notes.md, "Batch"). Every (row, sample) has a
key: a hash of its input, the settings and the sample. Its seed derives from that key, so a
resumed run asks the same calls again, and LangGraph's node cache (`proposer_cache_policy`, in a
SQLite file beside the output) answers the proposer calls that finished before a kill.
"""

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from langgraph.cache.sqlite import SqliteCache
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel

from moa_graph.batch.records import BatchRecord, error_type, run_pair, typed_record
from moa_graph.batch.rows import InputError, Row, row_or_error
from moa_graph.batch.store import RecordStore
from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.graph import build_moa_graph, proposer_cache_policy
from moa_graph.run_summary import panel_status
from moa_graph.state import Usage
from moa_graph.structured import AnswerSchema
from moa_graph.sync import run_sync
from moa_graph.usage import Prices


@dataclass
class BatchStats:
    """Counts and totals of a batch so far (resumed rows count as done).

    Attributes:
        skipped: (row, sample) pairs already ``ok`` in the output, not run again.
        ok: Pairs that finished ``ok`` in this run.
        degraded: Of those, the ones answered from fewer proposals than asked for.
        failed: Pairs that ended ``error`` in this run.
        usage: Tokens of this run's calls.
        cost_usd: Cost of this run's calls; None once a call had no price.
        stopped: Why the batch stopped early, or None.
    """

    skipped: int = 0
    ok: int = 0
    degraded: int = 0
    failed: int = 0
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=0, output_tokens=0))
    cost_usd: float | None = 0.0
    stopped: str | None = None

    @property
    def done(self) -> int:
        """Pairs finished, resumed ones included."""
        return self.skipped + self.ok + self.failed


@dataclass
class StopRule:
    """When to stop early.

    Stops after more than `max_failures` failures, or once 20 pairs have run, when more than
    `max_failure_rate` of them failed. None: never.
    """

    max_failures: int | None = None
    max_failure_rate: float | None = None

    def exceeded(self, stats: BatchStats) -> bool:
        """Return True when the failures so far break the rule."""
        if self.max_failures is not None and stats.failed > self.max_failures:
            return True
        ran = stats.ok + stats.failed
        return bool(
            self.max_failure_rate is not None
            and ran >= 20
            and stats.failed / ran > self.max_failure_rate
        )


class LocalPairs:
    """Runs (row, sample) pairs on this process's event loop, with one compiled graph."""

    def __init__(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        context: MoAContext,
        prices: Prices | None = None,
    ):
        self.graph, self.context, self.prices = graph, context, prices

    async def run(self, row: Row, sample: int, key: str) -> BatchRecord:
        """Run one pair and return its record."""
        return await run_pair(self.graph, self.context, self.prices, row, sample, key)

    def close(self) -> None:
        """Nothing to release."""


class PairExecutor(Protocol):
    """Where pairs run: `LocalPairs`, or `moa_graph.batch.ray_executor.RayPairs`."""

    async def run(self, row: Row, sample: int, key: str) -> BatchRecord:
        """Run one pair and return its record; never raise for the pair itself."""
        ...

    def close(self) -> None:
        """Release what the executor holds (actors, a cluster it started)."""
        ...


class BatchRunner:
    """One batch: settings, output and statistics; `run` yields records as rows finish.

    Args:
        graph: A compiled MoA graph; None builds ``build_moa_graph`` with the proposer node
            cache in a SQLite file beside `output` (or no cache without an output).
        context: The settings of every run (default ``MoAContext()``); each (row, sample)
            runs with ``seed`` derived from its key.
        samples: Answers per row, each with its own seeds.
        concurrency: (row, sample) runs in flight at once.
        output: JSONL or Parquet file to write records to, or None to only yield them.
        resume: Skip pairs already ``ok`` in `output` (for the same input and settings).
        retry_failed: Also redo pairs that ended ``error`` in `output`.
        prices: USD per million input and output tokens by model label, for ``cost_usd``;
            a call of a model without a price makes the cost unknown (None), never a guess.
        stop: When to stop early.
        executor: Where pairs run; default `LocalPairs` on `graph`. The caller closes an
            executor it passes (e.g. `moa_graph.batch.ray_executor.RayPairs`).
        schema: A JSON Schema (of an object) or a Pydantic model: every answer is that
            object, made the aggregator mode's way (`moa_graph.structured`) and validated; an
            answer that does not fit is an ``error`` record (`typed_record`). None: text.

    Raises:
        MoAConfigError: `output` holds rows made with other settings, or a bad argument.
    """

    def __init__(
        self,
        *,
        graph: CompiledStateGraph[Any, Any, Any, Any] | None = None,
        context: MoAContext | None = None,
        samples: int = 1,
        concurrency: int = 16,
        output: str | None = None,
        resume: bool = True,
        retry_failed: bool = False,
        prices: Prices | None = None,
        stop: StopRule | None = None,
        executor: PairExecutor | None = None,
        schema: Mapping[str, Any] | type[BaseModel] | AnswerSchema | None = None,
    ):
        if samples < 1 or concurrency < 1:
            raise MoAConfigError("samples and concurrency must be whole numbers >= 1")
        self.schema = None if schema is None else AnswerSchema.of(schema)
        self.context = context or MoAContext()
        if self.schema is not None:
            self.context = self.schema.context_for(self.context)
        self.samples = samples
        self.concurrency = concurrency
        self.prices = prices
        self.stop = stop or StopRule()
        self.stats = BatchStats()
        self.settings = settings_of(self.context)
        self.settings_hash = _digest(self.settings)[:16]
        self.store = RecordStore(output) if output else None
        self._done: set[str] = set()
        if self.store is not None:
            self.store.check_settings(self.settings, self.settings_hash)
            failed: set[str] = set()
            unread: set[str] = set()  # rows the input could not give: read them again
            for record in self.store.records():
                if record.get("status") == "ok" and resume:
                    self._done.add(record["key"])
                elif record.get("status") == "error":
                    unreadable = error_type(record) == InputError.__name__
                    (unread if unreadable else failed).add(record["key"])
            if retry_failed or not resume:
                self.store.drop(failed | unread)
            else:
                self.store.drop(unread)
                self._done |= failed
        self._owns_executor = executor is None
        self.executor: PairExecutor = executor or LocalPairs(
            self._graph(graph), self.context, prices
        )

    def _graph(
        self, graph: CompiledStateGraph[Any, Any, Any, Any] | None
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        return graph or build_moa_graph(proposer_cache=proposer_cache_policy()).compile(
            cache=SqliteCache(path=str(self.store.cache)) if self.store else None
        )

    def pair_key(self, row: Row, sample: int) -> str:
        """Return the key of one (row, sample): a hash of its input, the settings, the sample.

        A row that cannot be read has no messages: its position and error stand for them.
        """
        given = row.messages if row.error is None else [row.index, row.error]
        return _digest([given, self.settings_hash, sample])[:32]

    async def run(self, rows: Iterable[Row] | AsyncIterable[Row]) -> AsyncIterator[BatchRecord]:
        """Yield one record per (row, sample) run, in completion order; skip finished ones.

        Records are written to the output as they are yielded. The batch stops early when
        `stop` says so (``stats.stopped`` says why); cancelling the iteration cancels the runs
        in flight.
        """
        jobs: asyncio.Queue[tuple[Row, int, str] | None] = asyncio.Queue(self.concurrency * 2)
        finished: asyncio.Queue[BatchRecord | None] = asyncio.Queue()

        async def produce() -> None:
            try:
                async for row in _aiter(rows):
                    for sample in range(self.samples):
                        key = self.pair_key(row, sample)
                        if key in self._done:
                            self.stats.skipped += 1
                        else:
                            await jobs.put((row, sample, key))
            except asyncio.CancelledError:
                raise  # stopped (Ctrl-C): the workers are cancelled too, nobody takes an end mark
            except BaseException:
                await end_workers()  # the workers finish what they hold when the input fails
                raise
            await end_workers()

        async def end_workers() -> None:
            for _ in range(self.concurrency):
                await jobs.put(None)

        async def work() -> None:
            try:
                while (job := await jobs.get()) is not None:
                    record = await self.executor.run(*job)
                    if self.schema is not None:
                        record = typed_record(record, self.schema)
                    await finished.put(record)
            finally:
                finished.put_nowait(None)  # even a worker that failed ends: its error is raised

        tasks = [asyncio.create_task(produce())]
        tasks += [asyncio.create_task(work()) for _ in range(self.concurrency)]
        running = self.concurrency
        try:
            while running:
                record = await finished.get()
                if record is None:
                    running -= 1
                    continue
                self._count(record)
                if self.store is not None:
                    self.store.append(record)
                yield record
                if self.stop.exceeded(self.stats):
                    self.stats.stopped = f"{self.stats.failed} failures"
                    break
            await asyncio.gather(*tasks)  # surface an input error or a worker's
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.store is not None:
                self.store.close()
            if self._owns_executor:
                self.executor.close()

    def _count(self, record: BatchRecord) -> None:
        if record["status"] == "ok":
            self.stats.ok += 1
            self.stats.degraded += panel_status(record["proposals"])["degraded"]
        else:
            self.stats.failed += 1
        usage = record.get("usage")
        if usage:
            self.stats.usage["input_tokens"] += usage["input_tokens"]
            self.stats.usage["output_tokens"] += usage["output_tokens"]
        if record["status"] == "ok":
            cost = record.get("cost_usd")
            self.stats.cost_usd = (
                None
                if cost is None or self.stats.cost_usd is None
                else (self.stats.cost_usd + cost)
            )


async def abatch_generate(
    rows: Iterable[Any] | AsyncIterable[Any], **settings: Any
) -> AsyncIterator[BatchRecord]:
    """Run MoA over `rows` and yield one record per (row, sample) as each finishes.

    Args:
        rows: Prompts, OpenAI-style message lists, dicts (``prompt``/``instruction``/
            ``question`` or ``messages``, optional ``id``, other keys passed through), or
            `moa_graph.batch.rows.Row` objects; any iterable or async iterable, read lazily.
        **settings: `BatchRunner`'s arguments: ``graph``, ``context``, ``samples``,
            ``concurrency``, ``output``, ``resume``, ``retry_failed``, ``prices``, ``stop``,
            ``schema`` (typed answers: a JSON Schema or a Pydantic model).

    Yields:
        Records in completion order, each with its ``row`` index and ``sample``: ``answer``,
        ``status`` (``ok``/``error``), ``error``, ``proposals``, ``aggregation``, ``usage``,
        ``usage_by_model``, ``cost_usd``, ``latency_s``, and for ``ok`` records
        ``cached_calls`` (proposer calls answered by the node cache, e.g. when a failed row is
        redone: its ``latency_s`` is then shorter than its calls took).

    Raises:
        MoAConfigError: Bad settings or input, before the first call of the bad row.
    """
    runner = BatchRunner(**settings)
    async for record in runner.run(_rows(rows)):
        yield record


def batch_generate(rows: Iterable[Any], **settings: Any) -> list[BatchRecord]:
    """Run `abatch_generate` to the end and return every record, sorted by row and sample.

    For scripts and notebooks without an event loop; inside one, use `abatch_generate`.
    """

    async def collect() -> list[BatchRecord]:
        return [record async for record in abatch_generate(rows, **settings)]

    records = run_sync(collect())
    return sorted(records, key=lambda r: (r["row"], r["sample"]))


def settings_of(context: MoAContext) -> dict[str, Any]:
    """Return the settings that make a batch's answers what they are, JSON-ready.

    Rates, retries, timeouts and the call bound change how calls are made, not what they
    answer, so they are left out: a batch resumed with other limits reuses its rows.
    """
    values = dataclasses.asdict(context)
    for name in ("rpm", "tpm", "retries", "proposer_timeout_s", "max_calls"):
        del values[name]
    for name in ("tools", "tool_choice", "proposer_tools"):  # unset, older hashes hold
        if not values[name]:
            del values[name]
    return values


async def _rows(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Row]:
    index = 0
    async for item in _aiter(items):
        yield row_or_error(index, item)
        index += 1


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
