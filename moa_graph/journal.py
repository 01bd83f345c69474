"""An append-only JSON-lines file: each record one line, flushed at once, torn lines cut off.

A process killed mid-write leaves at most one torn last line; reading cuts it off, so what was
written whole is never lost and never read half. Batch outputs (`moa_graph.batch.store`) and
the eval's judge cache (`moa_graph.eval.judge`) are journals.
"""

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class Journal:
    """One JSON-lines file, appended to record by record.

    Args:
        path: The file; created (with its folder) at the first `append`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file: Any = None

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield the records written whole, in order; cut off a torn last line."""
        if not self.path.exists():
            return
        good = 0
        with self.path.open("rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a torn write: dropped below
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break
                good += len(line)
                yield record
        if good < self.path.stat().st_size:
            with self.path.open("r+b") as f:
                f.truncate(good)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a line and flush it to the OS."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._file.flush()

    def keep(self, wanted: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite the file with only the records `wanted` accepts (replaced whole)."""
        if not self.path.exists():
            return
        self.close()
        kept = self.path.with_name(self.path.name + ".tmp")
        with kept.open("w", encoding="utf-8") as out:
            for record in self.records():
                if wanted(record):
                    out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        os.replace(kept, self.path)

    def close(self) -> None:
        """Close the file; a later `append` opens it again."""
        if self._file is not None:
            self._file.close()
            self._file = None
