"""One proposer call: timeout, straggler cut-off, and the record it leaves.

A call never raises: an exception, a timeout, an empty answer or a cut-off becomes a
`Proposal` record with its status and error, so one failing model never loses the answers of
the others (unlike togethercomputer/MoA, which puts the text "None" into later prompts).
"""

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.runnables.config import get_async_callback_manager_for_config
from typing_extensions import TypedDict

from moa_graph.moa import usage_of
from moa_graph.state import Proposal, ProposalStatus, Usage
from moa_graph.stragglers import LayerGate

CUT_OFF = "CancelledError: cut off by first_k: the layer had enough answers"


class ProposerTask(TypedDict):
    """What one `Send` hands to the proposer node.

    Attributes:
        layer: 1-based layer.
        index: 0-based position of the call in its layer.
        spec: 0-based position of the call's spec (or model instance) in the layer's list.
        sample: 0-based sample of that spec.
        seed: Seed to send, or None to send none.
        model: Label for the record and the trace.
        messages: The prompt (references included after layer 1), before the spec's role.
        gate: Key of the layer's `LayerGate` when ``first_k`` is set, else None.
    """

    layer: int
    index: int
    spec: int
    sample: int
    seed: int | None
    model: str
    messages: list[BaseMessage]
    gate: str | None


async def call_proposer(
    model: Runnable[list[BaseMessage], BaseMessage],
    task: ProposerTask,
    messages: Sequence[BaseMessage],
    config: RunnableConfig,
    *,
    timeout_s: float,
    gate: LayerGate | None,
) -> Proposal:
    """Call one proposer asynchronously and return its record; never raises for the call.

    The call is cancelled when it takes more than `timeout_s` seconds (status ``timeout``) or
    when the layer's `gate` fires (status ``cancelled``); its traced run is then ended with
    that error, so LangSmith does not show it as still running.

    Args:
        model: The chat model, with the call's seed bound when one is sent.
        task: The branch's payload; copied into the record.
        messages: The prompt.
        config: Run name, tags and metadata of the call (merged with the node's config).
        timeout_s: Seconds to wait for the answer, queueing at the provider included.
        gate: The layer's straggler cut-off, or None.

    Returns:
        A `Proposal` record.
    """
    start = time.perf_counter()
    if gate is not None and gate.fired:
        return _record(task, start, "cancelled", error=CUT_OFF)
    config = RunnableConfig(**config, run_id=uuid.uuid4())
    call: asyncio.Future[BaseMessage] = asyncio.ensure_future(model.ainvoke(list(messages), config))
    cut, unregister = _async_cut(gate)
    try:
        waited: set[asyncio.Future[Any]] = {call, cut}
        await asyncio.wait(waited, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the run itself was cancelled
        call.cancel()
        raise
    finally:
        unregister()
        cut.cancel()
    if call.done():
        return _finished(task, start, call.exception() or call.result(), gate)
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    if cut.done() and not cut.cancelled():
        await _end_traced_run(config, asyncio.CancelledError(CUT_OFF))
        return _record(task, start, "cancelled", error=CUT_OFF)
    reason = f"no answer within {timeout_s:g} s"
    await _end_traced_run(config, TimeoutError(reason))
    return _record(task, start, "timeout", error=f"TimeoutError: {reason}")


def call_proposer_sync(
    model: Runnable[list[BaseMessage], BaseMessage],
    task: ProposerTask,
    messages: Sequence[BaseMessage],
    config: RunnableConfig,
    *,
    timeout_s: float,
    gate: LayerGate | None,
) -> Proposal:
    """Call one proposer synchronously and return its record; never raises for the call.

    The same as `call_proposer`, for ``graph.invoke``: the call runs in a daemon thread, and
    this returns at the timeout or the cut-off. A blocking HTTP call cannot be interrupted, so
    a call given up on finishes in the background and its result is dropped (its trace shows
    when it really ended).
    """
    start = time.perf_counter()
    if gate is not None and gate.fired:
        return _record(task, start, "cancelled", error=CUT_OFF)
    call: concurrent.futures.Future[BaseMessage] = concurrent.futures.Future()
    context = contextvars.copy_context()  # tracing context and callbacks of this branch

    def run() -> None:
        try:
            call.set_result(context.run(model.invoke, list(messages), config))
        except BaseException as exc:
            call.set_exception(exc)

    threading.Thread(target=run, daemon=True, name=f"moa-proposer-{task['index']}").start()
    cut: concurrent.futures.Future[None] = concurrent.futures.Future()

    def wake() -> None:
        if not cut.done():
            cut.set_result(None)

    unregister = gate.on_cut(wake) if gate else _nothing
    try:
        waited: list[concurrent.futures.Future[Any]] = [call, cut]
        concurrent.futures.wait(
            waited, timeout=timeout_s, return_when=concurrent.futures.FIRST_COMPLETED
        )
    finally:
        unregister()
    if call.done():
        return _finished(task, start, call.exception() or call.result(), gate)
    if cut.done():
        return _record(task, start, "cancelled", error=CUT_OFF)
    return _record(task, start, "timeout", error=f"TimeoutError: no answer within {timeout_s:g} s")


def _async_cut(gate: LayerGate | None) -> tuple["asyncio.Future[None]", Callable[[], None]]:
    """Return a future of this loop that completes when `gate` fires (never without a gate)."""
    loop = asyncio.get_running_loop()
    cut: asyncio.Future[None] = loop.create_future()
    if gate is None:
        return cut, _nothing

    def resolve() -> None:
        if not cut.done():
            cut.set_result(None)

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the branch is gone
            loop.call_soon_threadsafe(resolve)

    return cut, gate.on_cut(wake)


def _nothing() -> None:
    pass


def _finished(
    task: ProposerTask, start: float, result: BaseMessage | BaseException, gate: LayerGate | None
) -> Proposal:
    """Return the record of a call that ended by itself, and count an answer at the gate."""
    if isinstance(result, BaseException):
        return _record(task, start, "failed", error=f"{type(result).__name__}: {_shorten(result)}")
    usage = usage_of(result)
    if not result.text.strip():
        return _record(task, start, "failed", error="EmptyResponse: the model returned no text",
                       usage=usage)  # fmt: skip
    if gate is not None:
        gate.answered()
    return _record(task, start, "ok", content=result.text, usage=usage)


def _record(
    task: ProposerTask,
    start: float,
    status: ProposalStatus,
    *,
    content: str | None = None,
    error: str | None = None,
    usage: Usage | None = None,
) -> Proposal:
    return Proposal(
        layer=task["layer"],
        index=task["index"],
        model=task["model"],
        sample=task["sample"],
        seed=task["seed"],
        status=status,
        content=content,
        error=error,
        usage=usage,
        latency_s=round(time.perf_counter() - start, 3),
        selected=False,
    )


async def _end_traced_run(config: RunnableConfig, error: BaseException) -> None:
    """End the model's run (``config["run_id"]``) with `error` in tracers and callbacks.

    A chat model cancelled inside ``ainvoke`` never reports its end (langchain-core's
    ``agenerate`` is cancelled while it awaits the call), so LangSmith would show the cancelled
    proposer as still running.
    """
    manager = get_async_callback_manager_for_config(ensure_config(config))
    run = AsyncCallbackManagerForLLMRun(
        run_id=config["run_id"],  # type: ignore[arg-type]
        handlers=manager.handlers,
        inheritable_handlers=manager.inheritable_handlers,
        parent_run_id=manager.parent_run_id,
    )
    await run.on_llm_error(error)


def _shorten(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
