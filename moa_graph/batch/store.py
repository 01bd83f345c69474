"""Batch output: a JSONL journal written as rows finish, what it already holds, a manifest.

Each finished (row, sample) is one JSON line of a `moa_graph.journal.Journal`, appended and
flushed at once, so a killed batch loses nothing that finished. Re-reading the journal tells
which keys are done (``ok``) or failed; a torn last line (a kill mid-write) is cut off. For a
Parquet output the journal is ``OUTPUT.jsonl`` beside it and the Parquet file is written from
it at the end.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from moa_graph.batch.records import BatchRecord
from moa_graph.errors import MoAConfigError
from moa_graph.journal import Journal


class RecordStore:
    """The journal of one batch output.

    Args:
        output: The output file: ``.jsonl`` (the journal itself) or ``.parquet``.
    """

    def __init__(self, output: str | Path):
        self.output = Path(output)
        suffix = self.output.suffix.lower()
        if suffix not in (".jsonl", ".parquet"):
            raise MoAConfigError(f"output {self.output}: use a .jsonl or .parquet file")
        self.journal = self.output if suffix == ".jsonl" else Path(f"{self.output}.jsonl")
        self.manifest = Path(f"{self.output}.manifest.json")
        self.cache = Path(f"{self.output}.cache.sqlite")
        """LangGraph's node cache of the proposer calls that answered, for rows cut short."""
        self._journal = Journal(self.journal)

    def records(self) -> Iterator[BatchRecord]:
        """Yield the records already in the journal, cutting off a torn last line."""
        return cast(Iterator[BatchRecord], self._journal.records())

    def check_settings(self, settings: dict[str, Any], settings_hash: str) -> None:
        """Refuse to add to an output made with other settings; name the ones that differ.

        Raises:
            MoAConfigError: The manifest beside the output names another settings hash.
        """
        if not self.manifest.exists():
            return
        manifest = json.loads(self.manifest.read_text())
        previous = manifest.get("settings_hash")
        if previous and previous != settings_hash:
            before = manifest.get("settings") or {}
            now = json.loads(json.dumps(settings, default=str))  # as the manifest holds it
            changed = sorted(k for k in {*before, *now} if before.get(k) != now.get(k))
            which = ", ".join(changed) or "the input fields or the schema"
            raise MoAConfigError(
                f"{self.output} was made with other settings ({which} differ): its rows cannot "
                "be reused. Write to another -o, or delete the output and its "
                f"{self.manifest.name} to start again"
            )

    def drop(self, keys: set[str]) -> None:
        """Rewrite the journal without the records of `keys` (failed rows about to be redone)."""
        if keys:
            self._journal.keep(lambda record: record.get("key") not in keys)

    def append(self, record: BatchRecord) -> None:
        """Write one record and flush it to the OS."""
        self._journal.append(dict(record))

    def close(self) -> None:
        """Close the journal; for a Parquet output, write the Parquet file from it."""
        self._journal.close()
        if self.journal != self.output and self.journal.exists():
            _write_parquet(self.output, list(self._journal.records()))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write the manifest beside the output (replaced whole, never torn)."""
        partial = self.manifest.with_name(self.manifest.name + ".tmp")
        partial.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
        os.replace(partial, self.manifest)


def _write_parquet(path: Path, records: list[dict[str, Any]]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MoAConfigError("Parquet needs pyarrow: pip install 'moa-graph[batch]'") from None
    # A typed answer (an object) becomes a column per top-level field, "answer.<field>".
    # Nested values (proposals, usage, errors) are JSON text; every row has every column.
    rows = [_columns(r) for r in records]
    names = list(dict.fromkeys(name for row in rows for name in row))
    flat = [
        {
            name: json.dumps(value, default=str) if isinstance(value, dict | list) else value
            for name in names
            for value in [row.get(name)]
        }
        for row in rows
    ]
    pq.write_table(pa.Table.from_pylist(flat), path)


def _columns(record: dict[str, Any]) -> dict[str, Any]:
    """A record's columns; a missing answer (an error row) makes no ``answer`` column."""
    answer = record.get("answer")
    rest = {k: v for k, v in record.items() if k != "answer"}
    if isinstance(answer, dict):
        return {**rest, **{f"answer.{name}": value for name, value in answer.items()}}
    return rest if answer is None else record
