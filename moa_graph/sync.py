"""One event loop for the synchronous entry points: `batch_generate`, `run_eval`, the CLI.

langchain-openai caches one async HTTP client per base URL, and a kept-alive connection
cannot move to another event loop. With a fresh ``asyncio.run`` per call, the first request of
a second call in the same process fails with "RuntimeError: Event loop is closed" (measured:
`run_eval` twice in one script lost the second run's first item). Keeping one loop for the
process avoids it, as pytest's session-scoped loop does for the tests.
"""

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_runner: asyncio.Runner | None = None
_lock = threading.Lock()


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to the end on this process's one event loop and return its result.

    Call it from one thread at a time.

    Raises:
        RuntimeError: Called from inside a running event loop: await the async form instead.
    """
    global _runner
    with _lock:
        if _runner is None:
            _runner = asyncio.Runner()
    return _runner.run(coroutine)


def close() -> None:
    """Close this process's event loop: cancel what still runs there and wait for it.

    The CLI calls it on the way out, so that a run stopped by Ctrl-C leaves no task pending
    (Python would print "Task was destroyed but it is pending!" at exit).
    """
    global _runner
    with _lock:
        if _runner is not None:
            _runner.close()
            _runner = None
