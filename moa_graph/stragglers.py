"""Straggler cut-off (``MoAContext.first_k``): a layer goes on once k proposers have answered.

LangGraph starts the next node only when every `Send` branch of the layer has returned, so a
slow proposer must *return* once the layer has enough answers. The branches of one layer run
in one process (as asyncio tasks, or threads for sync ``invoke``) and share a `LayerGate`,
found by the key that the layer's fan-out puts into every branch's payload. A gate lives until
every branch of its layer has finished, so nothing outlives the layer.

MoA latency follows the slowest proposer (docs/notes.md, "Stragglers"); no published MoA
implementation cuts stragglers, so this follows the "first k of n" pattern of hedged requests.

The grace timer ends with its layer: it runs on the branch's event loop (``call_later``), or,
for a sync run, on one timer thread shared by the process, and is cancelled when the layer's
last branch leaves. No OS thread waits per timer.
"""

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol


class _Cancellable(Protocol):
    def cancel(self) -> None: ...


class _Timer:
    """A callback due at a monotonic time on the shared timer thread; `cancel` drops it."""

    def __init__(self, callback: Callable[[], None]):
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _TimerThread:
    """One daemon thread that runs the due callbacks of every sync run's grace timers."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(callback)
        with self._wake:
            heapq.heappush(self._due, (time.monotonic() + delay_s, next(self._order), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="moa-timers")
                self._thread.start()
            self._wake.notify()
        return timer

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    while self._due and self._due[0][2].cancelled:
                        heapq.heappop(self._due)
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    if wait is not None and wait <= 0:
                        timer = heapq.heappop(self._due)[2]
                        break
                    self._wake.wait(wait)
            if not timer.cancelled:
                timer.callback()


_timers = _TimerThread()


def _call_later(delay_s: float, callback: Callable[[], None]) -> _Cancellable:
    """Run `callback` after `delay_s` on this thread's event loop, else the timer thread."""
    try:
        return asyncio.get_running_loop().call_later(delay_s, callback)
    except RuntimeError:  # a sync run: no event loop in this thread
        return _timers.call_later(delay_s, callback)


class LayerGate:
    """Counts the answers of one layer and signals the cut-off to the branches still running.

    Args:
        first_k: Answers after which the calls still running are cancelled.
        grace_s: Seconds to wait after the k-th answer before cancelling.
    """

    def __init__(self, first_k: int, grace_s: float):
        self.first_k = first_k
        self.grace_s = grace_s
        self.fired = False
        """True once the cut-off has fired: branches not yet started return at once."""
        self.left = 0
        """Branches that have finished (counted by `layer_gate`)."""
        self._answered = 0
        self._callbacks: list[Callable[[], None]] = []
        self._timer: _Cancellable | None = None
        self._lock = threading.Lock()

    def answered(self) -> None:
        """Count one successful answer; fire the cut-off (after the grace) at the k-th."""
        with self._lock:
            self._answered += 1
            if self._answered != self.first_k:
                return
        if self.grace_s > 0:
            self._timer = _call_later(self.grace_s, self._fire)
        else:
            self._fire()

    def close(self) -> None:
        """Cancel the grace timer: the layer's last branch has left."""
        if self._timer is not None:
            self._timer.cancel()

    def on_cut(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (from any thread) when the cut-off fires; at once if it has.

        Returns:
            A function that unregisters `callback`; call it when the branch ends.
        """
        with self._lock:
            if not self.fired:
                self._callbacks.append(callback)
                return lambda: self._discard(callback)
        callback()
        return lambda: None

    def _discard(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def _fire(self) -> None:
        with self._lock:
            if self.fired:
                return
            self.fired = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


MAX_OPEN_GATES = 4096
"""Bound of the registry: a layer whose branches never all ran (a run cancelled before some
started, or a resumed run) leaves its gate behind; the oldest go first past this many."""

_gates: dict[str, LayerGate] = {}
_gates_lock = threading.Lock()


@contextlib.contextmanager
def layer_gate(key: str, first_k: int, grace_s: float, branches: int) -> Iterator[LayerGate]:
    """Share the gate of layer `key` with its other branches while this branch runs.

    The first branch to enter creates the gate; it is dropped when `branches` branches have
    left, so a branch that starts after the others have finished still sees the cut-off.

    Args:
        key: The layer's key, from the fan-out.
        first_k: ``MoAContext.first_k``.
        grace_s: ``MoAContext.straggler_grace_s``.
        branches: Proposer calls in the layer.
    """
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = LayerGate(first_k, grace_s)
            while len(_gates) > MAX_OPEN_GATES:
                _gates.pop(next(iter(_gates))).close()
    try:
        yield gate
    finally:
        with _gates_lock:
            gate.left += 1
            if gate.left >= branches:
                _gates.pop(key, None)
                gate.close()


def open_gates() -> int:
    """Return how many gates are held (zero once no layer with ``first_k`` is running)."""
    return len(_gates)
