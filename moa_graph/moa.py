"""The Mixture-of-Agents algorithm: references, proposer calls, the quorum of a layer.

Follows Wang et al., "Mixture-of-Agents Enhances Large Language Model Capabilities"
(arXiv 2406.04692, section 2.2) and its reference implementation, togethercomputer/MoA
``utils.py``: a later-layer proposer or the aggregator gets the conversation with the previous
layer's answers, numbered, appended to the system prompt. Unlike that implementation, failed
calls never reach a prompt: they become records with an error.
"""

import asyncio
import time
import uuid
from collections.abc import Sequence

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, ensure_config
from langchain_core.runnables.config import get_async_callback_manager_for_config

from moa_graph.errors import ProposerQuorumError
from moa_graph.state import Proposal, Usage


def inject_references(
    messages: Sequence[BaseMessage], references: Sequence[str], prompt: str
) -> list[BaseMessage]:
    """Return a copy of `messages` whose system prompt carries the numbered `references`.

    The reference block is `prompt` followed by one line per reference, a newline then
    ``{i}. {reference}``, numbered from 1 (togethercomputer/MoA
    ``inject_references_to_messages``). An existing leading system message is kept and the
    block is added after it, separated by a blank line; otherwise a system message is put
    first. The input list and its messages are never modified.

    Args:
        messages: The conversation, oldest first.
        references: Answers of the previous layer, in proposer order; must not be empty.
        prompt: The Aggregate-and-Synthesize instruction (``MoAContext.aggregator_prompt``).

    Returns:
        A new list: one system message, then the rest of the conversation.

    Raises:
        ValueError: `references` is empty (a layer with no answers must fail before this).
    """
    if not references:
        raise ValueError("inject_references needs at least one reference")
    block = prompt + "".join(f"\n{i}. {ref}" for i, ref in enumerate(references, start=1))
    if messages and isinstance(messages[0], SystemMessage):
        first = messages[0]
        merged = first.model_copy(update={"content": f"{first.text}\n\n{block}"})
        return [merged, *messages[1:]]
    return [SystemMessage(content=block), *messages]


def layer_references(proposals: Sequence[Proposal], layer: int) -> list[str]:
    """Return the answers of the successful proposers of a 1-based `layer`, in order."""
    return [p["content"] for p in proposals if p["layer"] == layer and p["content"] is not None]


async def call_proposer(
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    config: RunnableConfig,
    *,
    layer: int,
    index: int,
    label: str,
    timeout_s: float,
) -> Proposal:
    """Call one proposer and return its record; never raises for a failed call.

    An exception, a call longer than `timeout_s` seconds, or an answer with no text becomes a
    record with ``content=None`` and a short ``error`` text, so that one failing model never
    loses the answers of the others.

    Args:
        model: The chat model to call.
        messages: The prompt, references included for layers after the first.
        config: Run name, tags and metadata of the call (merged with the node's config).
        layer: 1-based layer number, copied into the record.
        index: 0-based position in the layer, copied into the record.
        label: The model's spec or name, copied into the record.
        timeout_s: Seconds to wait for the answer, queueing at the provider included.

    Returns:
        A `Proposal` record.
    """
    start = time.perf_counter()
    content: str | None = None
    error: str | None = None
    usage: Usage | None = None
    config = RunnableConfig(**config, run_id=uuid.uuid4())
    try:
        response = await asyncio.wait_for(model.ainvoke(list(messages), config), timeout=timeout_s)
    except TimeoutError:
        reason = f"no answer within {timeout_s:g} s"
        error = f"TimeoutError: {reason}"
        await _end_traced_run(config, TimeoutError(reason))
    except Exception as exc:
        error = f"{type(exc).__name__}: {_shorten(str(exc))}"
    else:
        usage = usage_of(response)
        if response.text.strip():
            content = response.text
        else:
            error = "EmptyResponse: the model returned no text"
    return Proposal(
        layer=layer,
        index=index,
        model=label,
        content=content,
        error=error,
        usage=usage,
        latency_s=round(time.perf_counter() - start, 3),
    )


def check_quorum(proposals: Sequence[Proposal], layer: int, min_proposals: int) -> None:
    """Raise unless at least `min_proposals` proposers of `layer` answered.

    Raises:
        ProposerQuorumError: Too few answers; it names every failed model and its error.
    """
    records = [p for p in proposals if p["layer"] == layer]
    failures = [(p["model"], p["error"] or "") for p in records if p["content"] is None]
    succeeded = len(records) - len(failures)
    if succeeded < min_proposals:
        raise ProposerQuorumError(layer, min_proposals, succeeded, failures)


def usage_of(message: BaseMessage) -> Usage | None:
    """Return the token usage an `AIMessage` reports, or None when it reports none."""
    meta = message.usage_metadata if isinstance(message, AIMessage) else None
    if not meta:
        return None
    return Usage(input_tokens=meta["input_tokens"], output_tokens=meta["output_tokens"])


async def _end_traced_run(config: RunnableConfig, error: BaseException) -> None:
    """End the model's run (``config["run_id"]``) with `error` in tracers and callbacks.

    A chat model cancelled inside ``ainvoke`` never reports its end (langchain-core's
    ``agenerate`` is cancelled while it awaits the call), so LangSmith would show the timed-out
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


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
