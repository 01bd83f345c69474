"""One run of a served request, in no API's shape: the reply, or its stream of events.

Every API shape (Chat Completions, the Responses API, Completions, Anthropic Messages) runs a
prepared request here and renders what comes back: `answer` returns a `Reply`; `answer_events`
yields `TextDelta` and `CallDelta` pieces as the answer is written, `Heartbeat` while the
proposers work, and last `Finished` (the reply) or `Failed` (the error). The run goes through
the core's one door (`moa_graph.answer_stream`, `moa_graph.run_summary`), in its own task,
cancelled when the client goes (docs/notes.md, "Serving": iterating ``astream`` inside the
response would keep generating after a disconnect, langgraph#5682).

A reply keeps the request's promises: text never goes past a stop sequence (also when it spans
streamed pieces), a schema's object is validated (off the event loop, under a CPU deadline), and
a request that forces a tool call gets a call or an error, never text.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessageChunk, BaseMessage
from langgraph.graph.state import CompiledStateGraph

from moa_graph.answer_stream import RunFinished, astream_answer
from moa_graph.context import MoAContext
from moa_graph.errors import AnswerDoesNotFit, MoAConfigError
from moa_graph.json_schema import SchemaTooCostly
from moa_graph.run_summary import RunSummary, summarize
from moa_graph.serving.errors import APIError, run_failed
from moa_graph.serving.requests import AnswerForm
from moa_graph.structured import check_fits

Finish = Literal["stop", "tool_calls", "length"]


@dataclass(frozen=True)
class Call:
    """A tool call of the answer: its id, name and arguments (JSON text)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    """A finished answer, as every shape reports it.

    Attributes:
        text: The answer's text (a schema's object as JSON text), or "" when it only calls.
        calls: The tool calls (at most one unless parallel calls are allowed).
        finish: ``stop``, ``tool_calls``, or ``length`` (the answer stopped at max_tokens).
        summary: The run's summary (usage, panel, ...).
        stop_sequence: The request's stop sequence the text was cut at, or None.
    """

    text: str
    calls: list[Call]
    finish: Finish
    summary: RunSummary
    stop_sequence: str | None = None


@dataclass(frozen=True)
class Heartbeat:
    """The proposers are still working: nothing to send yet."""


@dataclass(frozen=True)
class TextDelta:
    """The next piece of the answer's text."""

    text: str


@dataclass(frozen=True)
class CallDelta:
    """A piece of a tool call: its ``index``; ``id`` and ``name`` in its first piece only."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True)
class Finished:
    """The run ended with `reply`."""

    reply: Reply


@dataclass(frozen=True)
class Failed:
    """The run failed: `error` is what the client gets."""

    error: APIError


Event = Heartbeat | TextDelta | CallDelta | Finished | Failed


async def answer(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    messages: list[BaseMessage],
    context: MoAContext,
    form: AnswerForm,
) -> Reply:
    """Run the request and return its reply.

    Raises:
        APIError: 400 for settings the run refused, 500 for a failed run or an answer that
            breaks the request's form.
    """
    try:
        out = await graph.ainvoke({"messages": messages}, context=context)
    except MoAConfigError as exc:
        raise APIError(400, str(exc), "invalid_request_error", param="moa") from exc
    except Exception as exc:
        raise run_failed(exc) from exc
    return await asyncio.to_thread(reply_of, out["messages"][-1], form, summarize(out))


async def answer_events(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    messages: list[BaseMessage],
    context: MoAContext,
    form: AnswerForm,
    heartbeat_s: float,
) -> AsyncIterator[Event]:
    """Run the request and yield its events (see the module); the run stops when this does."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in astream_answer(
                graph, {"messages": messages}, context=context,
                answer_tool=form.schema.name if form.schema is not None else None,
            ):  # fmt: skip
                await queue.put(event)
        except Exception as exc:
            await queue.put(exc)

    task = asyncio.create_task(pump())
    pieces = _Pieces(form)
    try:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), heartbeat_s)
            except TimeoutError:
                yield Heartbeat()
                continue
            if isinstance(event, AIMessageChunk):
                for piece in pieces.of(event):
                    yield piece
            elif isinstance(event, Exception):
                error = (
                    APIError(400, str(event), "invalid_request_error", param="moa")
                    if isinstance(event, MoAConfigError)
                    else run_failed(event)
                )
                error.__cause__ = event  # what the run's records and metrics are read from
                yield Failed(error)
                return
            elif isinstance(event, RunFinished):
                break
        try:
            reply = await asyncio.to_thread(
                reply_of, event.state["messages"][-1], form, event.summary
            )
        except APIError as error:
            yield Failed(error)
            return
        if tail := pieces.flush():
            yield tail
        yield Finished(reply)
    finally:
        task.cancel()  # the client may be gone: no model call after that


def reply_of(message: BaseMessage, form: AnswerForm, summary: RunSummary) -> Reply:
    """Return the reply the answer `message` makes under `form` (CPU work: run it in a thread).

    Raises:
        APIError: 500 when a schema's object does not fit (never invalid JSON as an answer) or
            a forced tool call did not come; 400 ``schema_too_costly`` past the CPU deadline.
    """
    calls = getattr(message, "tool_calls", [])
    if form.schema is not None and (own := [c for c in calls if c["name"] == form.schema.name]):
        try:
            check_fits(own[0]["args"], form.schema.json_schema)
        except AnswerDoesNotFit as exc:
            raise APIError(
                500, f"the answer does not fit response_format: {exc}", "server_error",
                code="invalid_structured_output",
            ) from exc  # fmt: skip
        except SchemaTooCostly as exc:
            raise APIError(
                400, f"{exc}: simplify response_format's schema", "invalid_request_error",
                param="response_format", code="schema_too_costly",
            ) from exc  # fmt: skip
        return Reply(json.dumps(own[0]["args"]), [], _finish(summary), summary)
    if form.schema is not None and not calls:
        raise APIError(
            500, "the answer does not fit response_format: it made no call of "
            f"{form.schema.name!r} and called no tool", "server_error",
            code="invalid_structured_output",
        )  # fmt: skip
    if form.forced and not calls:
        raise APIError(
            500, "tool_choice asked for a tool call and the answer made none", "server_error",
            code="tool_choice_not_honoured",
        )  # fmt: skip
    text, stop = _cut_at_stop(message.text, form.stop)
    if calls:
        made = [
            Call(c["id"] or f"call_{i}", c["name"], json.dumps(c["args"]))
            for i, c in enumerate(calls[: None if form.parallel_tool_calls else 1])
        ]
        return Reply(text, made, "tool_calls", summary)
    return Reply(text, [], "stop" if stop else _finish(summary), summary, stop_sequence=stop)


def _finish(summary: RunSummary) -> Finish:
    return "length" if summary["cut_off"] else "stop"


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, str | None]:
    """`text` up to the first stop sequence in it, and that sequence (None when none is)."""
    found = [(i, stop) for stop in stops if (i := text.find(stop)) >= 0]
    if not found:
        return text, None
    cut, stop = min(found)
    return text[:cut], stop


def _before_stop(text: str, stops: tuple[str, ...]) -> str:
    """`text` up to the first stop sequence in it."""
    return _cut_at_stop(text, stops)[0]


@dataclass
class _Pieces:
    """The answer's chunks as text and call pieces, with the request's rules applied.

    Text is held back while it could be the start of a stop sequence, and nothing is sent past
    one; without parallel calls only the first call is sent. (A schema's object arrives as
    text: `moa_graph.answer_stream.AnswerStream`.)
    """

    form: AnswerForm
    first: int | None = None
    held: str = ""
    stopped: bool = False

    def of(self, chunk: AIMessageChunk) -> list[TextDelta | CallDelta]:
        pieces: list[TextDelta | CallDelta] = []
        if chunk.text:
            pieces += self._text(chunk.text)
        for fragment in chunk.tool_call_chunks:
            index = fragment.get("index") or 0
            self.first = index if self.first is None else self.first
            if self.form.parallel_tool_calls or index == self.first:
                args = fragment.get("args") or ""
                pieces.append(CallDelta(index, fragment.get("id"), fragment.get("name"), args))
        return pieces

    def flush(self) -> TextDelta | None:
        """What is held back once the answer is complete (no stop sequence came)."""
        held, self.held = self.held, ""
        return TextDelta(held) if held and not self.stopped else None

    def _text(self, text: str) -> list[TextDelta | CallDelta]:
        if self.stopped or not text:
            return []
        pending = self.held + text
        cut = _before_stop(pending, self.form.stop)
        if len(cut) < len(pending):
            self.stopped, self.held = True, ""
            return [TextDelta(cut)] if cut else []
        keep = max((len(s) - 1 for s in self.form.stop), default=0)
        # Hold the longest tail that could begin a stop sequence.
        hold = next((n for n in range(min(keep, len(pending)), 0, -1)
                     if any(s.startswith(pending[-n:]) for s in self.form.stop)), 0)  # fmt: skip
        self.held = pending[len(pending) - hold :]
        sent = pending[: len(pending) - hold]
        return [TextDelta(sent)] if sent else []
