"""One model call: admission, a timeout per attempt, retries, the straggler cut-off, the record.

Every proposer and aggregator call goes through `call_model` (async) or `call_model_sync`:
wait for admission (`moa_graph.limits`), then start the attempt and its timeout; retry what
`moa_graph.limits.is_retryable` allows; give up at once when the layer's `LayerGate` fires.
`call_proposer` turns the outcome into a `Proposal` record and never raises for the call, so
one failing model never loses the answers of the others (unlike togethercomputer/MoA, which
puts the text "None" into later prompts).
"""

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.runnables.config import get_async_callback_manager_for_config
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt

from moa_graph.limits import Admission, is_retryable, release, retry_wait
from moa_graph.state import Proposal, ProposalStatus, ProposerTask, Usage
from moa_graph.stragglers import LayerGate
from moa_graph.tool_turns import describe_calls
from moa_graph.usage import hit_max_tokens, usage_of

if TYPE_CHECKING:
    from moa_graph.call_plan import CallSlot

CUT_OFF = "CancelledError: cut off by first_k: the layer had enough answers"

Model = Runnable[Any, Any]


class CutOff(Exception):
    """The layer had ``first_k`` answers before this call finished."""


@dataclass(frozen=True)
class CallPolicy:
    """How one call is made.

    Attributes:
        timeout_s: Seconds one attempt may take once admitted; None for no limit.
        retries: Further attempts after a retryable failure (``MoAContext.retries``).
        admission: Rate limits and server capacity to wait for first, or None.
    """

    timeout_s: float | None
    retries: int = 0
    admission: Admission | None = None

    @classmethod
    def of(cls, slot: "CallSlot", retries: int) -> "CallPolicy":
        """Return the policy of a call of `slot` (its timeout and admission) with `retries`."""
        return cls(timeout_s=slot.timeout_s, retries=retries, admission=slot.admission)


async def call_model(
    model: Model,
    messages: Sequence[BaseMessage],
    config: RunnableConfig,
    policy: CallPolicy,
    cut: "asyncio.Future[None] | None" = None,
) -> BaseMessage:
    """Call `model` under `policy` and return its reply.

    Raises:
        CutOff: `cut` completed first.
        TimeoutError: The last attempt took longer than ``policy.timeout_s``.
        Exception: The model's own error, when not retryable or after the last retry.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.retries + 1),
        wait=retry_wait,
        retry=retry_if_exception(is_retryable),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            reply = await _attempt(model, list(messages), config, policy, cut)
    return reply


def call_model_sync(
    model: Model,
    messages: Sequence[BaseMessage],
    config: RunnableConfig,
    policy: CallPolicy,
    cut: "concurrent.futures.Future[None] | None" = None,
) -> BaseMessage:
    """Call `model` under `policy` and return its reply (sync form of `call_model`).

    Each attempt runs in a daemon thread: a blocking HTTP call cannot be interrupted, so an
    attempt given up on (timeout, cut-off) finishes in the background and its result is
    dropped; its traced run ends when the call really returns.
    """
    retrying = Retrying(
        stop=stop_after_attempt(policy.retries + 1),
        wait=retry_wait,
        retry=retry_if_exception(is_retryable),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            reply = _attempt_sync(model, list(messages), config, policy, cut)
    return reply


async def call_proposer(
    model: Model,
    task: ProposerTask,
    messages: Sequence[BaseMessage],
    config: RunnableConfig,
    *,
    policy: CallPolicy,
    gate: LayerGate | None,
) -> Proposal:
    """Call one proposer and return its record; never raises for the call itself.

    Args:
        model: The chat model, with the call's seed bound when one is sent.
        task: The branch's payload; copied into the record.
        messages: The prompt.
        config: Run name, tags and metadata of the call (merged with the node's config).
        policy: Timeout, retries and admission.
        gate: The layer's straggler cut-off, or None.

    Returns:
        A `Proposal`: ``ok``, ``failed`` (an error or no text), ``timeout``, or ``cancelled``
        (cut off by ``first_k``).
    """
    start = time.perf_counter()
    if gate is not None and gate.fired:
        return _record(task, start, "cancelled", error=CUT_OFF)
    loop = asyncio.get_running_loop()
    cut: asyncio.Future[None] = loop.create_future()

    def resolve() -> None:
        if not cut.done():
            cut.set_result(None)

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the branch is gone
            loop.call_soon_threadsafe(resolve)

    unregister = gate.on_cut(wake) if gate else _nothing
    try:
        reply: BaseMessage | BaseException = await call_model(model, messages, config, policy, cut)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        reply = exc
    finally:
        unregister()
        cut.cancel()
    return _finished(task, start, reply, gate)


def call_proposer_sync(
    model: Model,
    task: ProposerTask,
    messages: Sequence[BaseMessage],
    config: RunnableConfig,
    *,
    policy: CallPolicy,
    gate: LayerGate | None,
) -> Proposal:
    """Call one proposer and return its record (sync form of `call_proposer`)."""
    start = time.perf_counter()
    if gate is not None and gate.fired:
        return _record(task, start, "cancelled", error=CUT_OFF)
    cut: concurrent.futures.Future[None] = concurrent.futures.Future()

    def wake() -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            cut.set_result(None)

    unregister = gate.on_cut(wake) if gate else _nothing
    try:
        reply: BaseMessage | BaseException = call_model_sync(model, messages, config, policy, cut)
    except Exception as exc:
        reply = exc
    finally:
        unregister()
    return _finished(task, start, reply, gate)


async def _attempt(
    model: Model,
    messages: list[BaseMessage],
    config: RunnableConfig,
    policy: CallPolicy,
    cut: "asyncio.Future[None] | None",
) -> BaseMessage:
    admission = policy.admission
    reserved, slot = await admission.aenter(_chars(messages)) if admission else (0, None)
    reply: BaseMessage | None = None
    run_config = RunnableConfig(**config, run_id=uuid.uuid4())
    try:
        if cut is not None and cut.done():
            raise CutOff(CUT_OFF)
        call = asyncio.ensure_future(model.ainvoke(messages, run_config))
        waited: set[asyncio.Future[Any]] = {call} if cut is None else {call, cut}
        try:
            await asyncio.wait(
                waited, timeout=policy.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # the run itself was cancelled
            call.cancel()
            raise
        if call.done():
            reply = call.result()
            return reply
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        error = _given_up(policy, cut)
        await _aend_run(run_config, error)
        raise error
    finally:
        release(slot)
        if admission:
            admission.settle(reserved, usage_of(reply) if reply is not None else None)


def _attempt_sync(
    model: Model,
    messages: list[BaseMessage],
    config: RunnableConfig,
    policy: CallPolicy,
    cut: "concurrent.futures.Future[None] | None",
) -> BaseMessage:
    admission = policy.admission
    reserved, slot = admission.enter(_chars(messages)) if admission else (0, None)
    reply: BaseMessage | None = None
    run_config = RunnableConfig(**config, run_id=uuid.uuid4())
    try:
        if cut is not None and cut.done():
            raise CutOff(CUT_OFF)
        call: concurrent.futures.Future[BaseMessage] = concurrent.futures.Future()
        context = contextvars.copy_context()  # tracing context and callbacks of this branch

        def run() -> None:
            try:
                call.set_result(context.run(model.invoke, messages, run_config))
            except BaseException as exc:
                call.set_exception(exc)

        threading.Thread(target=run, daemon=True, name="moa-model-call").start()
        waited: list[concurrent.futures.Future[Any]] = [call] if cut is None else [call, cut]
        concurrent.futures.wait(
            waited, timeout=policy.timeout_s, return_when=concurrent.futures.FIRST_COMPLETED
        )
        if call.done():
            reply = call.result()
            return reply
        raise _given_up(policy, cut)
    finally:
        release(slot)
        if admission:
            admission.settle(reserved, usage_of(reply) if reply is not None else None)


def _given_up(policy: CallPolicy, cut: Any) -> Exception:
    if cut is not None and cut.done() and not cut.cancelled():
        return CutOff(CUT_OFF)
    return TimeoutError(f"no answer within {policy.timeout_s:g} s")


def _finished(
    task: ProposerTask, start: float, reply: BaseMessage | BaseException, gate: LayerGate | None
) -> Proposal:
    """Return the record of a finished call, and count an answer at the gate."""
    if isinstance(reply, CutOff):
        return _record(task, start, "cancelled", error=CUT_OFF)
    if isinstance(reply, BaseException):
        status: ProposalStatus = "timeout" if isinstance(reply, TimeoutError) else "failed"
        return _record(task, start, status, error=f"{type(reply).__name__}: {_shorten(reply)}")
    usage = usage_of(reply)
    calls = reply.tool_calls if isinstance(reply, AIMessage) else []
    if not reply.text.strip() and not calls:
        return _record(task, start, "failed", error="EmptyResponse: the model returned no text",
                       usage=usage)  # fmt: skip
    if gate is not None:
        gate.answered()
    content = describe_calls(reply.text, calls) if calls else reply.text
    record = _record(task, start, "ok", content=content, usage=usage)
    if calls:  # a proposer given the tools proposed calls: the references show them
        record["tool_calls"] = [{"name": c["name"], "args": c["args"]} for c in calls]
    if hit_max_tokens(reply):
        record["cut_off"] = True
    return record


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


async def _aend_run(config: RunnableConfig, error: BaseException) -> None:
    """End the model's run (``config["run_id"]``) with `error` in tracers and callbacks.

    A chat model cancelled inside ``ainvoke`` never reports its end (langchain-core's
    ``agenerate`` is cancelled while it awaits the call), so LangSmith would show the call as
    still running.
    """
    manager = get_async_callback_manager_for_config(ensure_config(config))
    run = AsyncCallbackManagerForLLMRun(
        run_id=config["run_id"],  # type: ignore[arg-type]
        handlers=manager.handlers,
        inheritable_handlers=manager.inheritable_handlers,
        parent_run_id=manager.parent_run_id,
    )
    await run.on_llm_error(error)


def _chars(messages: Sequence[BaseMessage]) -> int:
    return sum(len(m.text) for m in messages)


def _shorten(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _nothing() -> None:
    pass
