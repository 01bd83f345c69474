"""Straggler cut-off (``MoAContext.first_k``): a layer goes on once k proposers have answered.

LangGraph starts the next node only when every `Send` branch of the layer has returned, so a
slow proposer must *return* once the layer has enough answers. The branches of one layer run
in one process (as asyncio tasks, or threads for sync ``invoke``) and share a `LayerGate`,
found by the key that the layer's fan-out puts into every branch's payload. The registry holds
gates weakly: a gate lives while a branch of its layer runs, and nothing outlives the layer.

MoA latency follows the slowest proposer (VARIANTS.md); no published MoA implementation cuts
stragglers, so this follows the "first k of n" pattern of hedged requests.
"""

import threading
import weakref
from collections.abc import Callable


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
        self._answered = 0
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def answered(self) -> None:
        """Count one successful answer; fire the cut-off (after the grace) at the k-th."""
        with self._lock:
            self._answered += 1
            if self._answered != self.first_k:
                return
        if self.grace_s > 0:
            timer = threading.Timer(self.grace_s, self._fire)
            timer.daemon = True
            timer.start()
        else:
            self._fire()

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


_gates: "weakref.WeakValueDictionary[str, LayerGate]" = weakref.WeakValueDictionary()
_gates_lock = threading.Lock()


def layer_gate(key: str, first_k: int, grace_s: float) -> LayerGate:
    """Return the gate of the layer `key`, creating it for the first branch that asks.

    The caller must keep the returned object referenced while its branch runs: the registry
    holds gates weakly, so the gate goes away with the layer's last branch.
    """
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = LayerGate(first_k, grace_s)
        return gate


def open_gates() -> int:
    """Return how many gates are alive (zero once no layer with ``first_k`` is running)."""
    return len(_gates)
