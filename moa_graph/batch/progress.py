"""Batch progress on stderr: a live bar on a terminal, plain lines every few seconds otherwise."""

import sys
import time
from types import TracebackType
from typing import Any

from moa_graph.batch.runner import BatchStats

LOG_EVERY_S = 5.0


class Progress:
    """Shows rows done / failed, rate, ETA, tokens and cost while a batch runs.

    Args:
        stats: The runner's live statistics.
        total: (row, sample) pairs in the batch, or None when unknown (stdin).
        enabled: False shows nothing.
        label: What the bar and log lines are labelled with (default "batch").
    """

    def __init__(
        self, stats: BatchStats, total: int | None, *, enabled: bool = True, label: str = "batch"
    ):
        self.stats = stats
        self.label = label
        self.total = total
        self.enabled = enabled
        self.start = time.monotonic()
        self._last_log = 0.0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> "Progress":
        if self.enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}", style="bold", markup=False),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[detail]}"),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, detail="")
        return self

    def update(self) -> None:
        """Refresh the bar, or log a line when the last one is `LOG_EVERY_S` seconds old."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.stats.done, detail=self._short())
            return
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            print(f"moa-graph: {self.label} {self.detail()}", file=sys.stderr, flush=True)

    def detail(self) -> str:
        """One line: done/total, failed, rate, ETA, tokens and cost."""
        s = self.stats
        elapsed = max(time.monotonic() - self.start, 1e-9)
        ran = s.ok + s.failed
        rate = ran / elapsed * 60
        total = f"/{self.total}" if self.total is not None else ""
        eta = ""
        if self.total is not None and ran:
            left = max(self.total - s.done, 0)
            eta = f", ETA {left / (ran / elapsed):.0f} s"
        cost = "unknown" if s.cost_usd is None else f"${s.cost_usd:.4f}"
        return (
            f"{s.done}{total} done ({s.skipped} resumed), {s.failed} failed, "
            f"{rate:.1f} rows/min{eta}, {s.usage['input_tokens']} tokens in, "
            f"{s.usage['output_tokens']} out, cost {cost}"
        )

    def _short(self) -> str:
        s = self.stats
        rate = (s.ok + s.failed) / max(time.monotonic() - self.start, 1e-9) * 60
        cost = "" if s.cost_usd is None else f" ${s.cost_usd:.2f}"
        tokens = s.usage["input_tokens"] + s.usage["output_tokens"]
        return f"{s.failed} failed {rate:.0f}/min {tokens / 1000:.0f}k tok{cost}"

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.stats.done, detail=self._short())
            self._bar.stop()
