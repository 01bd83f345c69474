"""The FastAPI app: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``.

Streaming sends the role chunk at once, empty-delta heartbeats while the proposers run, only
the aggregator's tokens (or tool-call deltas: index, id, name, argument fragments), one
``finish_reason``, the usage chunk when asked, then ``[DONE]``. A JSON answer
(``response_format``) streams as text and is validated at the end: one that does not fit ends
the stream with an error event and no ``finish_reason``;
the graph runs in its own task, cancelled when the client goes (docs/notes.md, "Serving": iterating
``astream`` inside the response would keep generating after a disconnect, langgraph#5682).
"""

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from langchain_core.messages import AIMessageChunk, BaseMessage
from langgraph.graph.state import CompiledStateGraph
from openai.types import CompletionUsage
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageToolCallUnion,
)
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from openai.types.chat.chat_completion_message_function_tool_call import Function

from moa_graph.answer_stream import Event, RunFinished, astream_answer
from moa_graph.context import MoAContext
from moa_graph.errors import AnswerDoesNotFit, MoAConfigError
from moa_graph.graph import build_moa_graph
from moa_graph.json_schema import SchemaTooCostly
from moa_graph.run_summary import RunSummary, summarize
from moa_graph.serving.catalog import (
    WORKERS_ENV,
    ServedModel,
    assistants_file,
    find_model,
    model_card,
    report_oversized,
    served_models,
)
from moa_graph.serving.errors import (
    APIError,
    RequestIds,
    check_key,
    install_handlers,
    run_failed,
)
from moa_graph.serving.requests import AnswerForm, BodyLimit, ChatRequest, prepare
from moa_graph.state import InputState
from moa_graph.structured import answer_object
from moa_graph.trust import RequestPolicy


def create_app(
    *,
    graph: CompiledStateGraph[Any, Any, Any, Any] | None = None,
    models: dict[str, ServedModel] | None = None,
    policy: RequestPolicy | None = None,
) -> FastAPI:
    """Build the OpenAI-compatible app.

    Args:
        graph: The compiled MoA graph to run; default ``build_moa_graph().compile()``.
        models: The model ids served; default `served_models` with the saved assistants of
            ``MOA_SERVE_ASSISTANTS`` (none when it is unset).
        policy: What a request may set and its budgets; default
            `moa_graph.trust.RequestPolicy.from_environment` (``MOA_SERVE_*``). A served model
            whose own settings are over the budgets is logged as a warning here.

    Returns:
        A FastAPI app with ``GET /v1/models``, ``GET /v1/models/{id}`` and
        ``POST /v1/chat/completions``.
    """
    moa: CompiledStateGraph[Any, Any, Any, Any] = graph or build_moa_graph().compile(name="moa")
    catalog = models if models is not None else served_models(assistants_file())
    policy = policy or RequestPolicy.from_environment()
    workers = int(os.environ.get(WORKERS_ENV, "1"))
    report_oversized(catalog, policy)
    limit = asyncio.Semaphore(int(os.environ.get("MOA_MAX_CONCURRENT_REQUESTS", "16")))
    app = FastAPI(title="moa-graph OpenAI-compatible API")
    app.add_middleware(BodyLimit, max_bytes=policy.max_body_bytes)
    app.add_middleware(RequestIds)  # outermost: every answer carries its id
    router = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    @router.get("/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(m).model_dump() for m in catalog.values()]}

    @router.get("/models/{model_id}")
    async def get_model(model_id: str) -> dict[str, Any]:
        return model_card(find_model(catalog, model_id)).model_dump()

    @router.post("/chat/completions", response_model=None)
    async def chat_completions(body: ChatRequest) -> JSONResponse | StreamingResponse:
        # Off the event loop: checking a request's schemas is CPU work.
        served = find_model(catalog, body.model)
        messages, context, form = await asyncio.to_thread(prepare, body, served, policy, workers)
        if limit.locked():
            raise APIError(
                429,
                "the server is at its limit of concurrent requests; retry later",
                "requests",
                code="rate_limit_exceeded",
            )
        inputs: InputState = {"messages": messages}  # type: ignore[typeddict-item]
        if body.stream:
            return StreamingResponse(
                _stream(moa, inputs, context, body, form, limit),
                media_type="text/event-stream",
            )
        async with limit:
            try:
                out = await moa.ainvoke(inputs, context=context)
            except MoAConfigError as exc:
                raise APIError(400, str(exc), "invalid_request_error", param="moa") from exc
            except Exception as exc:
                raise run_failed(exc) from exc
        message, finish = await asyncio.to_thread(_reply, out["messages"][-1], form)
        summary = summarize(out)
        completion = ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            object="chat.completion",
            created=int(time.time()),
            model=body.model,
            usage=_usage(summary),
            choices=[Choice(index=0, finish_reason=finish, message=message)],
        )
        return JSONResponse(
            {**completion.model_dump(exclude_none=True), "moa": _moa_field(summary, body)},
            headers={PANEL_HEADER: _panel_header(summary)},
        )

    app.include_router(router)
    install_handlers(app)
    return app


async def _stream(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    inputs: InputState,
    context: MoAContext,
    body: ChatRequest,
    form: AnswerForm,
    limit: asyncio.Semaphore,
) -> AsyncIterator[str]:
    """The SSE events of one streamed completion."""
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    heartbeat_s = float(os.environ.get("MOA_SERVE_HEARTBEAT_S", "0.5"))
    queue: asyncio.Queue[Event | Exception] = asyncio.Queue()

    def chunk(delta: ChoiceDelta, finish: Any = None, usage: Any = None, moa: Any = None) -> str:
        choices = [] if usage else [ChunkChoice(index=0, delta=delta, finish_reason=finish)]
        event = ChatCompletionChunk(
            id=chunk_id,
            object="chat.completion.chunk",
            created=created,
            model=body.model,
            choices=choices,
            usage=usage,
        )
        fields = event.model_dump(mode="json", exclude_unset=True)
        return f"data: {json.dumps({**fields, 'moa': moa} if moa else fields)}\n\n"

    async def pump() -> None:
        try:
            async for event in astream_answer(graph, inputs, context=context):
                await queue.put(event)
        except Exception as exc:
            await queue.put(exc)

    await limit.acquire()
    task = asyncio.create_task(pump())
    try:
        yield chunk(ChoiceDelta(role="assistant", content=""))
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), heartbeat_s)
            except TimeoutError:
                yield chunk(ChoiceDelta())  # keeps clients with a chunk timeout waiting
                continue
            if isinstance(event, AIMessageChunk):
                if delta := _delta(event, form):
                    yield chunk(delta)
            elif isinstance(event, Exception):
                error = (
                    APIError(400, str(event), "invalid_request_error", param="moa")
                    if isinstance(event, MoAConfigError)
                    else run_failed(event)
                )
                yield f"data: {json.dumps(error.body())}\n\n"
                return
            elif isinstance(event, RunFinished):
                break
        try:
            _, finish = await asyncio.to_thread(_reply, event.state["messages"][-1], form)
        except APIError as error:
            yield f"data: {json.dumps(error.body())}\n\n"
            return
        # The finishing chunk says how many proposals went into the answer (the headers are
        # long gone when streaming).
        yield chunk(ChoiceDelta(), finish=finish, moa=_moa_field(event.summary, body))
        if (body.stream_options or {}).get("include_usage"):
            yield chunk(ChoiceDelta(), usage=_usage(event.summary))
        yield "data: [DONE]\n\n"
    finally:
        task.cancel()  # the client may be gone: no model call after that
        limit.release()


FinishReason = Literal["stop", "tool_calls"]
PANEL_HEADER = "x-moa-proposals"
"""Response header: ``answered/asked`` proposals of the layer the answer was made from
(``2/3``)."""


def _moa_field(summary: RunSummary, body: ChatRequest) -> dict[str, Any]:
    """The answer's ``moa`` field: the panel's status, and the fusion judge's analysis if asked."""
    field: dict[str, Any] = {
        "proposals_asked": summary["proposals_asked"],
        "proposals_answered": summary["proposals_answered"],
        "degraded": summary["degraded"],
    }
    if body.include_analysis:
        field["analysis"] = summary["aggregation"].get("analysis")
    return field


def _panel_header(summary: RunSummary) -> str:
    return f"{summary['proposals_answered']}/{summary['proposals_asked']}"


def _reply(answer: BaseMessage, form: AnswerForm) -> tuple[ChatCompletionMessage, FinishReason]:
    """Return the answer as OpenAI's message, and its ``finish_reason``.

    Runs in a worker thread: validating a JSON answer is CPU work, bounded by a deadline.

    Raises:
        APIError: 500 when a JSON answer (``response_format``) does not fit its schema: never
            invalid JSON presented as an answer; 400 ``schema_too_costly`` when checking it
            ran past its CPU deadline.
    """
    if form.schema is not None:
        try:
            value = answer_object(answer, form.schema.name, form.schema.json_schema)
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
        return ChatCompletionMessage(role="assistant", content=json.dumps(value)), "stop"
    calls = getattr(answer, "tool_calls", [])[: None if form.parallel_tool_calls else 1]
    if not calls:
        return ChatCompletionMessage(role="assistant", content=answer.text), "stop"
    tool_calls: list[ChatCompletionMessageToolCallUnion] = [
        ChatCompletionMessageFunctionToolCall(
            id=call["id"] or f"call_{i}", type="function",
            function=Function(name=call["name"], arguments=json.dumps(call["args"])),
        )
        for i, call in enumerate(calls)
    ]  # fmt: skip
    message = ChatCompletionMessage(
        role="assistant", content=answer.text or None, tool_calls=tool_calls
    )
    return message, "tool_calls"


def _delta(token: AIMessageChunk, form: AnswerForm) -> ChoiceDelta | None:
    """The OpenAI delta of one piece of the answer (None when it carries nothing to send)."""
    first = [c for c in token.tool_call_chunks if c.get("index") in (None, 0)]
    if form.schema is not None:  # the forced call's arguments are the answer's text
        text = "".join(c.get("args") or "" for c in first)
        return ChoiceDelta(content=text) if text else None
    calls = token.tool_call_chunks if form.parallel_tool_calls else first
    deltas = [
        {
            "index": c.get("index") or 0,
            **({"id": c["id"], "type": "function"} if c.get("id") else {}),
            "function": {k: v for k, v in (("name", c.get("name")), ("arguments", c.get("args")))
                         if v},
        }
        for c in calls
    ]  # fmt: skip
    if not deltas and not token.text:
        return None
    # Only the fields set are sent (exclude_unset): a delta carries what changed.
    return ChoiceDelta.model_validate(
        {**({"content": token.text} if token.text else {}),
         **({"tool_calls": deltas} if deltas else {})}
    )  # fmt: skip


def _usage(summary: RunSummary) -> CompletionUsage:
    """The sum over every model call of the run: proposers and aggregator."""
    usage = summary["usage"]
    return CompletionUsage(
        prompt_tokens=usage["input_tokens"],
        completion_tokens=usage["output_tokens"],
        total_tokens=usage["total_tokens"],
    )


app = create_app()
"""The app ``langgraph dev`` loads (langgraph.json ``http.app``) and ``moa-graph serve`` runs."""
