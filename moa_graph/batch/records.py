"""The record of one (row, sample) of a batch: what one MoA run answered, or why it failed.

`run_pair` runs the graph once and returns a `BatchRecord`; a failure is an error record that
keeps the proposals that answered, so a failed row never loses the work of its models. The
worker pool that calls it is `moa_graph.batch.runner`; `moa_graph.batch.ray_executor` calls
it on Ray actors.
"""

import dataclasses
import time
from typing import Any, Literal, NotRequired, cast

from langchain_core.messages import convert_to_messages
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from moa_graph.batch.rows import InputError, Row
from moa_graph.context import MoAContext
from moa_graph.errors import AggregatorError, AnswerDoesNotFit, ProposerQuorumError
from moa_graph.layers import SEED_RANGE
from moa_graph.run_summary import summarize
from moa_graph.state import Aggregation, Proposal, Usage
from moa_graph.structured import AnswerSchema
from moa_graph.tool_turns import call_arguments
from moa_graph.usage import Prices, cost_of, total_usage


class BatchError(TypedDict):
    """Why a (row, sample) failed.

    Attributes:
        type: The exception's class name, e.g. ``"ProposerQuorumError"``.
        message: moa-graph's message (without LangGraph's task suffix).
        layer: The layer whose quorum failed, or None.
        model: The models that failed (comma-separated), or None.
    """

    type: str
    message: str
    layer: int | None
    model: str | None


class BatchRecord(TypedDict):
    """One (row, sample) of a batch, as written to the output (one JSON line).

    The row's own columns (other than the prompt, messages and id fields) are copied in too.

    Attributes:
        id: The row's id (its id field, else its number).
        row: 0-based row number in the input.
        sample: 0-based sample of the row.
        key: Hash of the row's input, the settings and the sample (the resume key).
        prompt: The prompt, for a prompt row.
        messages: The conversation, for a messages row.
        answer: The answer text, or None when the run failed; with a schema
            (``BatchRunner(schema=...)``), the validated object.
        tool_calls: The tool calls the answer made (``name`` and ``args`` each), only when it
            made some (runs with ``tools``).
        status: ``"ok"`` or ``"error"``.
        error: Why it failed, or None.
        proposals: Every proposer call of the run (kept for failed runs too).
        aggregation: How the answer was made, or None when the run failed.
        usage: Tokens of every call, or None when none was reported.
        usage_by_model: Tokens per model label.
        cost_usd: USD of the calls, or None when a model has no price (or the run failed).
        latency_s: Wall time of the run in seconds.
        cached_calls: Proposer calls answered by the node cache (then ``latency_s`` is shorter
            than the calls took); on ``ok`` records.
        cut_off: True when the answer stopped at ``max_tokens`` (it may be cut off); on ``ok``
            records.
    """

    id: Any
    row: int
    sample: int
    key: str
    prompt: NotRequired[str]
    messages: NotRequired[list[Any]]
    answer: Any
    tool_calls: NotRequired[list[dict[str, Any]]]
    status: Literal["ok", "error"]
    error: BatchError | None
    proposals: list[Proposal]
    aggregation: Aggregation | None
    usage: Usage | None
    usage_by_model: dict[str, Usage]
    cost_usd: float | None
    latency_s: float
    cached_calls: NotRequired[int]
    cut_off: NotRequired[bool]


async def run_pair(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    context: MoAContext,
    prices: Prices | None,
    row: Row,
    sample: int,
    key: str,
) -> BatchRecord:
    """Run MoA once for (row, sample) and return its record; a failure is an error record.

    The run's seed derives from `key`, so the same pair asks the same calls wherever it runs.
    """
    context = dataclasses.replace(context, seed=int(key[:8], 16) % SEED_RANGE)
    start = time.perf_counter()
    try:
        if row.error is not None:
            raise InputError(row.error)
        messages = convert_to_messages(row.messages)
        out: dict[str, Any] = {}
        cached = 0  # proposer calls answered by the node cache: they took no time here
        async for mode, chunk in graph.astream(
            {"messages": messages}, context=context, stream_mode=["updates", "values"]
        ):
            update = cast(dict[str, Any], chunk)
            if mode == "values":
                out = update
            else:
                cached += bool(update.get("__metadata__", {}).get("cached"))
        summary = summarize(out)
    except Exception as exc:
        return error_record(row, sample, key, exc, _since(start))
    by_model = summary["usage_by_model"]
    calls = [{"name": c["name"], "args": c["args"]} for c in summary["tool_calls"]]
    return cast(
        BatchRecord,
        {
            **_record_base(row, sample, key),
            "answer": summary["answer"],
            **({"tool_calls": calls} if calls else {}),
            "status": "ok",
            "error": None,
            "proposals": out["proposals"],
            "aggregation": summary["aggregation"],
            "usage": total_usage(by_model.values()),
            "usage_by_model": by_model,
            "cost_usd": cost_of(by_model, prices),
            "latency_s": _since(start),
            "cached_calls": cached,
            "cut_off": summary["cut_off"],
        },
    )


def typed_record(record: BatchRecord, schema: AnswerSchema) -> BatchRecord:
    """Return an ``ok`` record with its answer as `schema`'s validated object.

    The answer is the arguments of its call of the schema's tool. One that made no such call,
    or whose object does not fit, becomes an ``error`` record (``AnswerDoesNotFit``, the
    message saying where) that keeps the proposals, the aggregation and the usage, so
    ``--retry-failed`` redoes it. Other records are returned unchanged.
    """
    if record["status"] != "ok":
        return record
    typed = cast(BatchRecord, dict(record))
    calls = typed.pop("tool_calls", [])
    try:
        typed["answer"] = schema.parse(call_arguments(calls, schema.name, record["answer"] or ""))
    except AnswerDoesNotFit as exc:
        aggregation = record["aggregation"]
        typed["answer"], typed["status"] = None, "error"
        typed["error"] = {"type": "AnswerDoesNotFit", "message": str(exc), "layer": None,
                          "model": aggregation["model"] if aggregation else None}  # fmt: skip
        typed.pop("cached_calls", None)
    return typed


def error_type(record: BatchRecord) -> str | None:
    """Return the kind of a failed record's error (``"InputError"``, ...), else None."""
    error = record.get("error")
    return error["type"] if error else None


def error_record(
    row: Row, sample: int, key: str, error: BaseException, latency_s: float
) -> BatchRecord:
    """Return the record of a pair that failed with `error`."""
    fields = {**_record_base(row, sample, key), **_error_fields(error), "latency_s": latency_s}
    return cast(BatchRecord, fields)


def _record_base(row: Row, sample: int, key: str) -> dict[str, Any]:
    base: dict[str, Any] = {"id": row.id, "row": row.index, "sample": sample, "key": key}
    base.update({"prompt": row.prompt} if row.prompt is not None else {})
    base.update({"messages": row.messages} if row.prompt is None else {})
    base.update(row.columns)
    return base


def _error_fields(error: BaseException) -> dict[str, Any]:
    layer = model = None
    proposals: list[Any] = []
    if isinstance(error, ProposerQuorumError):
        layer, proposals = error.layer, error.records
        model = ", ".join(sorted({m for m, _ in error.failures})) or None
    elif isinstance(error, AggregatorError):
        model, proposals = error.model, error.records
    message = str(error).split("\nDuring task with name")[0]
    return {
        "answer": None,
        "status": "error",
        "error": {
            "type": type(error).__name__,
            "message": message,
            "layer": layer,
            "model": model,
        },
        "proposals": proposals,
        "aggregation": None,
        "usage": None,
        "usage_by_model": {},
        "cost_usd": None,
    }


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 3)
