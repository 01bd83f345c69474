"""What one run may do: its admitted context and its count of model calls, out of a caller's reach.

LangGraph's API can start any node of a graph without passing through the first one: a
``command`` with ``goto`` and ``update``, ``POST /threads/{id}/state``, a ``RemoveMessage``, a
run from an older checkpoint, a saved or patched assistant, ``/mcp`` (docs/notes.md, "Serving").
So the operator's guard (`moa_graph.trust.RequestPolicy`) sits where every node passes:

- `run_context` is the one way a node gets its settings. With a guard, it admits the run's
  context once per run (`RequestPolicy.check_context`) before any node creates or calls a
  model, and returns it with ``max_calls`` bounded by the operator's budget.
- `count_call` comes before every model call of a guarded run and refuses the call past the
  budget (`CallBudgetExceeded`): the budget counts the calls the run makes, whatever its state
  or its ``Send`` payloads say.

- `hold_until_run_ends` keeps an error a node's error handler handled alive for the rest of
  its run, so that LangGraph, which remembers handled errors by ``id()``, cannot take a later
  error at the same address for a handled one and end the run silently.

All three are kept in a ledger per run, never in the graph's state or its context (a caller
writes those). The ledger is keyed by LangGraph's `langgraph.runtime.RunControl`, which a root run
creates and shares with its subgraphs and with the graphs its nodes invoke, so a run that nests
MoA graphs (graphs/moa_agent.py) counts its calls once.
"""

import dataclasses
import sys
import threading
from typing import Any, TypeVar, overload

from langgraph.runtime import Runtime, get_runtime

from moa_graph.context import MoAContext
from moa_graph.trust import RequestPolicy, RequestRefused

__all__ = [
    "CallBudgetExceeded",
    "adopt_context",
    "count_call",
    "run_context",
]


Context = TypeVar("Context", bound=MoAContext)


class CallBudgetExceeded(RequestRefused):
    """A guarded run tried one model call more than its budget allows.

    Attributes:
        calls: The calls the run had made when this one was refused.
    """

    def __init__(self, calls: int, setting: str):
        super().__init__(
            setting,
            f"this run has made {calls} model calls, the most {setting} allows; the next call "
            "was refused. Ask for fewer proposers, samples or rounds, or the operator raises "
            f"{setting}",
            reason="over_budget",
        )
        self.calls = calls


@dataclasses.dataclass(eq=False)
class _Ledger:
    """One run's admitted contexts, model calls and handled errors.

    `control` is the run's `RunControl`: held here, its id cannot be reused by another run
    while this ledger lives.
    """

    control: object
    admitted: dict[int, tuple[object, MoAContext]] = dataclasses.field(default_factory=dict)
    handled: list[BaseException] = dataclasses.field(default_factory=list)
    calls: int = 0
    max_calls: int | None = None
    setting: str = "max_calls"
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def admit(self, given: object, ctx: MoAContext, bounded: MoAContext, setting: str) -> None:
        """Remember `given` (the run's context object) as admitted, as `bounded`."""
        self.admitted[id(given)] = (given, bounded)  # `given` held: its id stays its own
        if bounded.max_calls is not None and (
            self.max_calls is None or bounded.max_calls < self.max_calls
        ):
            self.max_calls = bounded.max_calls
            self.setting = setting if bounded.max_calls != ctx.max_calls else "max_calls"


_ledgers: dict[int, _Ledger] = {}
_ledgers_lock = threading.Lock()


@overload
def run_context(guard: RequestPolicy | None) -> MoAContext: ...


@overload
def run_context(guard: RequestPolicy | None, schema: type[Context]) -> Context: ...


def run_context(guard: RequestPolicy | None, schema: type[Any] = MoAContext) -> Any:
    """Return the current run's settings; with a guard, admitted by it once per run.

    Every node of a graph gets its context here, so a node started by LangGraph's API in any way
    still runs on an admitted context.

    Args:
        guard: The operator's policy, or None to trust the context (the Python API).
        schema: The graph's context schema (`MoAContext` or a subclass); its defaults, read from
            ``MOA_*`` variables, are the operator's settings the guard compares with, and the
            settings of a run given no context.

    Returns:
        The run's context; with a guard, a copy whose ``max_calls`` is bounded by
        ``guard.max_calls``.

    Raises:
        RequestRefused: The context sets what the operator does not allow, or is over a budget
            (`moa_graph.trust.RequestPolicy.check_context`).
        RuntimeError: Called outside a LangGraph run.
    """
    runtime: Runtime[Any] | None = get_runtime(schema)
    if runtime is None:  # `update_state` runs a node's routers outside a run, on no context
        return schema()
    given = runtime.context
    if guard is None:
        return given if given is not None else schema()
    ledger = _ledger(runtime)
    with ledger.lock:
        admitted = ledger.admitted.get(id(given))
    if admitted is not None:
        return admitted[1]
    operator = schema()
    ctx = given if given is not None else operator
    bounded = guard.check_context(ctx, operator)
    with ledger.lock:
        ledger.admit(given, ctx, bounded, "MOA_SERVE_MAX_CALLS")
    return bounded


def adopt_context(ctx: MoAContext) -> None:
    """Admit, for the rest of the current run, a context the graph's own code derived.

    For a graph that sets fields of an admitted context itself (graphs/moa_agent.py gives the
    MoA graph its own tools): a subgraph or graph invoked with `ctx` then runs on it as it is.
    Never pass a context that came from a caller. Without a guarded admission in this run it
    does nothing.

    Raises:
        RuntimeError: Called outside a LangGraph run.
    """
    ledger = _ledgers.get(id(_control(get_runtime())))
    if ledger is not None:
        with ledger.lock:
            ledger.admit(ctx, ctx, ctx, "MOA_SERVE_MAX_CALLS")


def count_call() -> None:
    """Count one model call of the current run against its budget (guarded runs only).

    Call it before each model call: proposers, aggregator, a router's single model.

    Raises:
        CallBudgetExceeded: The run has made ``max_calls`` calls already.
        RuntimeError: Called outside a LangGraph run.
    """
    runtime = get_runtime()
    ledger = None if runtime is None else _ledgers.get(id(_control(runtime)))
    if ledger is None:
        return  # no guard admitted this run's context: the Python API's arithmetic bound holds
    with ledger.lock:
        if ledger.max_calls is not None and ledger.calls >= ledger.max_calls:
            raise CallBudgetExceeded(ledger.calls, ledger.setting)
        ledger.calls += 1


def hold_until_run_ends(error: BaseException) -> None:
    """Keep `error`, which a node's error handler handled, alive until the current run ends.

    LangGraph (1.2) records the errors its node error handlers handled by ``id()`` and never
    re-raises a later error of the same run with a recorded id. A handled error that is freed
    during the run leaves its address to the next object of its size, so a later error (a
    layer's `moa_graph.errors.ProposerQuorumError`) could be dropped and the run end without
    an answer and without raising: measured in about 1 % of runs whose only proposer failed
    under the proposer cache. Held here, no other error of the run can have its id. Its
    traceback is dropped: its frames reach the run's `RunControl`, which would keep the
    ledger from being freed.

    Raises:
        RuntimeError: Called outside a LangGraph run.
    """
    ledger = _ledger(get_runtime())
    with ledger.lock:
        ledger.handled.append(error.with_traceback(None))


def _control(runtime: Runtime[Any]) -> object:
    if runtime.control is None:
        raise RuntimeError("no LangGraph run: the guard needs the run's RunControl")
    return runtime.control


def _ledger(runtime: Runtime[Any]) -> _Ledger:
    """The ledger of the run `runtime` belongs to; made at its first guarded node or held error."""
    control = _control(runtime)
    with _ledgers_lock:
        ledger = _ledgers.get(id(control))
        if ledger is None:
            _forget_finished_runs()
            ledger = _ledgers[id(control)] = _Ledger(control)
        return ledger


def _forget_finished_runs() -> None:
    """Drop the ledgers of runs that ended: nothing but their ledger holds their RunControl.

    `RunControl` takes no weak reference (it has ``__slots__``), so the ledgers hold it and
    look at its reference count: the ledger's own reference and the call's argument.
    """
    for key in [k for k, ledger in _ledgers.items() if sys.getrefcount(ledger.control) <= 2]:
        del _ledgers[key]
