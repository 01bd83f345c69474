"""Batch input: rows from JSONL, CSV, Parquet or Python objects, read lazily.

A row gives a prompt (``prompt``, ``instruction`` or ``question``, or the field you name) or a
whole conversation (OpenAI-style messages), an optional id, and other columns that pass
through to the output record.
"""

import contextlib
import csv
import io
import itertools
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from moa_graph.errors import MoAConfigError

PROMPT_FIELDS = ("prompt", "instruction", "question")
"""Fields read as the prompt, in this order, when no ``prompt_field`` is named."""

RESERVED = frozenset(
    {"id", "row", "sample", "key", "prompt", "messages", "answer", "status", "error",
     "proposals", "aggregation", "usage", "usage_by_model", "cost_usd", "latency_s",
     "cached_calls", "cut_off"}
)  # fmt: skip
"""Keys of an output record; an input column with one of these names (other than the id and
prompt fields) is refused before any call."""


class InputError(MoAConfigError):
    """A row of the input cannot run (no prompt, not JSON, ...): fix the input file.

    Its record is an error record of this type; the next run reads the row again (fixed or
    not) instead of keeping the old error.
    """


@dataclass(frozen=True)
class Row:
    """One input row.

    Attributes:
        index: 0-based position in the input: every message names a row by it, as the output
            record's ``row`` does (blank lines are not rows).
        id: The row's id (its id field, else its index), as text.
        messages: The conversation, OpenAI-style (``[{"role": "user", "content": ...}]``).
        prompt: The prompt text when the row gave one, else None.
        columns: Other columns, passed through to the output.
        error: Why the row cannot run (it becomes an error record, no call is made), or None.
    """

    index: int
    id: str
    messages: list[dict[str, Any]]
    prompt: str | None = None
    columns: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Fields:
    """Which input fields hold what (the CLI's ``--prompt-field`` and friends)."""

    prompt: str | None = None
    messages: str | None = None
    id: str = "id"


def to_row(index: int, item: object, fields: Fields = Fields()) -> Row:
    """Return the `Row` of one input item: a prompt text, a message list, or a dict.

    Raises:
        MoAConfigError: No prompt or messages field, a field of the wrong type, or a column
            named like an output key; the message names the row and the field.
    """
    if isinstance(item, str):
        return Row(index, str(index), [{"role": "user", "content": item}], prompt=item)
    if isinstance(item, list):
        return Row(index, str(index), _messages(index, item))
    if not isinstance(item, dict):
        raise MoAConfigError(f"row {index}: expected a prompt, a message list or an object")
    row_id = str(item[fields.id]) if item.get(fields.id) not in (None, "") else str(index)
    used = {fields.id}
    if fields.messages is not None:
        if fields.messages not in item:
            raise MoAConfigError(f"row {index} has no {fields.messages!r} field (--messages-field)")
        messages = _messages(index, item[fields.messages])
        used.add(fields.messages)
        prompt = None
    else:
        names = (fields.prompt,) if fields.prompt else PROMPT_FIELDS
        name = next((n for n in names if n in item), None)
        if name is None or not isinstance(item[name], str) or not item[name].strip():
            raise MoAConfigError(
                f"row {index} has no prompt: give a non-empty {' or '.join(map(repr, names))} "
                "field, or name yours with --prompt-field (or --messages-field)"
            )
        prompt = item[name]
        messages = [{"role": "user", "content": prompt}]
        used.add(name)
    columns = {k: v for k, v in item.items() if k not in used}
    clash = sorted(set(columns) & RESERVED)
    if clash:
        raise MoAConfigError(
            f"row {index}: input columns {clash} would overwrite output fields: rename them"
        )
    return Row(index, row_id, messages, prompt, columns)


def read_rows(source: str | Path, fields: Fields = Fields()) -> Iterator[Row]:
    """Yield the rows of a JSONL, CSV or Parquet file (by extension), or of JSONL on stdin (``-``).

    The file is read as it is consumed, never all at once.

    Raises:
        MoAConfigError: Unknown extension, a missing file, a bad line (named by number), or
            Parquet without pyarrow.
    """
    if str(source) == "-":
        yield from _jsonl(sys.stdin, fields)
        return
    path = Path(source)
    if not path.is_file():
        raise MoAConfigError(f"input {path} not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            yield from _jsonl(f, fields)
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            for index, item in enumerate(csv.DictReader(f)):
                yield row_or_error(index, item, fields)
    elif suffix == ".parquet":
        yield from _parquet(path, fields)
    else:
        raise MoAConfigError(
            f"input {path}: unknown format {suffix!r}: use .jsonl, .csv or .parquet (or '-')"
        )


def row_or_error(index: int, item: object, fields: Fields = Fields()) -> Row:
    """Return `to_row`'s row, or a row that carries its error (it runs as an error record)."""
    if isinstance(item, Row):
        return item
    try:
        return to_row(index, item, fields)
    except MoAConfigError as exc:
        row_id = item.get(fields.id) if isinstance(item, dict) else None
        return Row(index, str(row_id if row_id not in (None, "") else index), [], error=str(exc))


def _jsonl(lines: io.TextIOBase | Any, fields: Fields) -> Iterator[Row]:
    index = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Row(
                index, str(index), [], error=f"row {index} (line {number}) is not JSON: {exc}"
            )
        else:
            yield row_or_error(index, item, fields)
        index += 1


def _parquet(path: Path, fields: Fields) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MoAConfigError("Parquet needs pyarrow: pip install 'moa-graph[batch]'") from None
    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for item in batch.to_pylist():
            yield row_or_error(index, item, fields)
            index += 1


def _messages(index: int, value: object) -> list[dict[str, Any]]:
    if isinstance(value, str):  # a JSON text, as a CSV cell holds it
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
    )
    if not ok:
        raise MoAConfigError(
            f"row {index}: messages must be a non-empty list of {{'role': ..., 'content': ...}}"
        )
    return cast(list[dict[str, Any]], value)


def select_rows(
    rows: Iterator[Row], limit: int | None, shard: tuple[int, int] | None
) -> Iterator[Row]:
    """Keep the first `limit` rows, then those of shard (I, K): row number % K == I."""
    if limit is not None:
        rows = itertools.islice(rows, limit)
    if shard is not None:
        index, count = shard
        rows = (row for row in rows if row.index % count == index)
    return rows


def count_rows(source: str, limit: int | None, shard: tuple[int, int] | None) -> int | None:
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
