"""The FastAPI app: OpenAI's and Anthropic's API shapes over one MoA pipeline, under ``/v1``.

``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``,
``POST /v1/responses`` (the Responses API, stateless), ``POST /v1/completions`` and
``POST /v1/messages`` (Anthropic's Messages API). Every shape becomes a
`moa_graph.serving.requests.ChatRequest`, is checked by the one code path
(`moa_graph.serving.requests.prepare`: the trust policy, budgets and schema checks), runs
through `moa_graph.serving.answers` and is rendered in its own shape
(`moa_graph.serving.chat_shape`, `moa_graph.serving.responses_shape`,
`moa_graph.serving.anthropic_shape`). Any other path under ``/v1`` is an OpenAI-shaped 404
naming what this server offers.

``moa-graph serve`` runs `serve_app`, which adds the operator's routes: ``GET /healthz``,
``GET /readyz`` (`moa_graph.serving.health`) and ``GET /metrics``
(`moa_graph.serving.metrics`). ``langgraph dev`` loads `app`, without them: LangGraph's
server has its own ``/ok`` and ``/metrics``.
"""

import asyncio
import functools
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from langchain_core.messages import BaseMessage
from langgraph.graph.state import CompiledStateGraph
from pydantic import Field

from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.graph import build_moa_graph
from moa_graph.serving import metrics
from moa_graph.serving.answers import (
    CallDelta,
    Event,
    Failed,
    Finished,
    TextDelta,
    answer,
    answer_events,
)
from moa_graph.serving.anthropic_shape import MessagesRequest, message, message_events
from moa_graph.serving.anthropic_shape import to_chat_request as anthropic_request
from moa_graph.serving.catalog import (
    ServedModel,
    assistants_file,
    find_model,
    model_card,
    operator_labels,
    report_oversized,
    served_models,
)
from moa_graph.serving.chat_shape import (
    completion,
    completion_events,
    panel_header,
    text_completion,
    text_completion_events,
)
from moa_graph.serving.errors import APIError, RequestIds, check_key, install_handlers
from moa_graph.serving.health import not_ready
from moa_graph.serving.requests import AnswerForm, BodyLimit, ChatRequest, prepare
from moa_graph.serving.responses_shape import (
    ResponsesRequest,
    response,
    response_events,
    to_chat_request,
)
from moa_graph.trust import RequestPolicy

OFFERED = (
    "GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions, POST /v1/responses, "
    "POST /v1/completions, POST /v1/messages"
)


def create_app(
    *,
    graph: CompiledStateGraph[Any, Any, Any, Any] | None = None,
    models: dict[str, ServedModel] | None = None,
    policy: RequestPolicy | None = None,
    operator_routes: bool = False,
) -> FastAPI:
    """Build the OpenAI-compatible app.

    Args:
        graph: The compiled MoA graph to run; default ``build_moa_graph().compile()``.
        models: The model ids served; default `served_models` with the saved assistants of
            ``MOA_SERVE_ASSISTANTS`` (none when it is unset).
        policy: What a request may set and its budgets; default
            `moa_graph.trust.RequestPolicy.from_environment` (``MOA_SERVE_*``). A served model
            whose own settings are over the budgets is logged as a warning here.
        operator_routes: Add ``/healthz``, ``/readyz`` and ``/metrics`` (``MOA_SERVE_METRICS``:
            ``key``, the default, puts it behind the API key; ``open``; ``off``).

    Returns:
        A FastAPI app with the routes of the module docstring.

    Raises:
        MoAConfigError: ``MOA_SERVE_METRICS`` is not ``key``, ``open`` or ``off``.
    """
    moa: CompiledStateGraph[Any, Any, Any, Any] = graph or build_moa_graph().compile(name="moa")
    catalog = models if models is not None else served_models(assistants_file())
    policy = policy or RequestPolicy.from_environment()
    known = operator_labels(catalog)
    heartbeat_s = float(os.environ.get("MOA_SERVE_HEARTBEAT_S", "0.5"))
    report_oversized(catalog, policy)
    limit = asyncio.Semaphore(int(os.environ.get("MOA_MAX_CONCURRENT_REQUESTS", "16")))
    lifespan = metrics.worker_lifespan if operator_routes else None
    app = FastAPI(title="moa-graph OpenAI-compatible API", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=policy.max_body_bytes)
    app.add_middleware(metrics.RequestMetrics)  # counts the 413s of BodyLimit too
    app.add_middleware(RequestIds)  # outermost: every answer carries its id
    router = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    async def run(
        body: ChatRequest,
        whole: Callable[[Any], dict[str, Any]],
        streamed: Callable[[AsyncIterator[Event]], AsyncIterator[str]],
    ) -> JSONResponse | StreamingResponse:
        """The one pipeline: prepare (off the loop), admit, run, render in the shape asked."""
        started = time.perf_counter()
        served = find_model(catalog, body.model)
        metrics.name_model(served.id)
        messages, context, form = await asyncio.to_thread(prepare, body, served, policy)
        if limit.locked():
            raise APIError(
                429, "the server is at its limit of concurrent requests; retry later",
                "requests", code="rate_limit_exceeded",
            )  # fmt: skip
        if body.stream:
            events = _admitted(limit, _Run(moa, messages, context, form, served.id, known),
                               heartbeat_s, started)  # fmt: skip
            return StreamingResponse(streamed(events), media_type="text/event-stream")
        async with limit:
            with metrics.IN_FLIGHT.track_inprogress():
                try:
                    reply = await answer(moa, messages, context, form)
                except APIError as error:
                    metrics.observe_failure(error, known)
                    raise
        metrics.observe_run(reply.summary, served.id, known)
        return JSONResponse(whole(reply), headers=panel_header(reply.summary))

    @router.get("/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(m).model_dump() for m in catalog.values()]}

    @router.get("/models/{model_id}")
    async def get_model(model_id: str) -> dict[str, Any]:
        return model_card(find_model(catalog, model_id)).model_dump()

    @router.post("/chat/completions", response_model=None)
    async def chat_completions(body: ChatRequest) -> JSONResponse | StreamingResponse:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return await run(
            body,
            lambda reply: completion(reply, body.model, body.include_analysis),
            lambda events: completion_events(events, body.model, include_usage=include_usage,
                                             include_analysis=body.include_analysis),
        )  # fmt: skip

    @router.post("/responses", response_model=None)
    async def responses(body: ResponsesRequest) -> JSONResponse | StreamingResponse:
        return await run(
            to_chat_request(body),
            lambda reply: response(reply, body).model_dump(mode="json", exclude_none=True),
            lambda events: response_events(events, body),
        )

    @router.post("/completions", response_model=None)
    async def completions(body: CompletionRequest) -> JSONResponse | StreamingResponse:
        chat = body.as_chat()
        return await run(
            chat,
            lambda reply: text_completion(reply, body.model),
            lambda events: text_completion_events(events, body.model),
        )

    @router.post("/messages", response_model=None)
    async def messages(body: MessagesRequest) -> JSONResponse | StreamingResponse:
        return await run(
            anthropic_request(body),
            lambda reply: message(reply, body.model),
            lambda events: message_events(events, body.model),
        )

    @router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def not_offered(path: str, request: Request) -> JSONResponse:
        raise APIError(
            404, f"{request.method} /v1/{path} is not offered by this server; it offers "
            f"{OFFERED}", "invalid_request_error", code="not_found",
        )  # fmt: skip

    app.include_router(router)
    if operator_routes:
        _add_operator_routes(app, catalog)
    install_handlers(app)
    return app


def serve_app() -> FastAPI:
    """The app ``moa-graph serve`` runs (uvicorn's factory): the API and the operator's routes."""
    return create_app(operator_routes=True)


def _add_operator_routes(app: FastAPI, catalog: dict[str, ServedModel]) -> None:
    """``/healthz``, ``/readyz`` (no key) and ``/metrics`` (as ``MOA_SERVE_METRICS`` says)."""
    exposure = os.environ.get(metrics.METRICS_ENV, "key").strip().lower()
    if exposure not in ("key", "open", "off"):
        raise MoAConfigError(
            f"{metrics.METRICS_ENV}={exposure!r}: use key (behind the API key), open or off"
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=None)
    async def readyz() -> JSONResponse:
        problems = await asyncio.to_thread(not_ready, catalog)
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready", "models": sorted(catalog)})

    if exposure != "off":
        guard = [Depends(check_key)] if exposure == "key" else []

        @app.get("/metrics", dependencies=guard)
        async def prometheus_metrics() -> Response:
            body, content_type = await asyncio.to_thread(metrics.exposition)
            return Response(body, media_type=content_type)


class CompletionRequest(ChatRequest):
    """The body of ``POST /v1/completions``: a ``prompt`` answered as one user message."""

    messages: list[dict[str, Any]] = Field(default_factory=list)
    prompt: str | list[str]

    def as_chat(self) -> ChatRequest:
        """Return the chat request that answers the prompt.

        Raises:
            APIError: 400 for a list of several prompts (one answer per request).
        """
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        if len(prompts) != 1:
            raise APIError(400, "prompt must be one text: MoA writes one answer per request",
                           "invalid_request_error", param="prompt")  # fmt: skip
        fields = self.model_dump(exclude={"prompt", "messages"}, exclude_none=True)
        return ChatRequest(**fields, messages=[{"role": "user", "content": prompts[0]}])


@dataclass(frozen=True)
class _Run:
    """A prepared request: what to run, and the labels its metrics take."""

    graph: CompiledStateGraph[Any, Any, Any, Any]
    messages: list[BaseMessage]
    context: MoAContext
    form: AnswerForm
    served: str
    known: set[str]


async def _admitted(
    limit: asyncio.Semaphore, run: _Run, heartbeat_s: float, started: float
) -> AsyncIterator[Event]:
    """The run's events while it holds one of the server's concurrent slots, observed."""
    first = True
    async with limit:
        with metrics.IN_FLIGHT.track_inprogress():
            events = answer_events(run.graph, run.messages, run.context, run.form, heartbeat_s)
            async for event in events:
                if first and isinstance(event, TextDelta | CallDelta):
                    metrics.observe_first_piece(run.served, time.perf_counter() - started)
                    first = False
                elif isinstance(event, Finished):
                    metrics.observe_run(event.reply.summary, run.served, run.known)
                elif isinstance(event, Failed):
                    metrics.observe_failure(event.error, run.known)
                yield event


@functools.cache
def _app() -> FastAPI:
    return create_app()


def __getattr__(name: str) -> Any:
    """``app``: the app ``langgraph dev`` loads (langgraph.json ``http.app``).

    Built on first use, so that ``moa-graph serve`` (which runs `serve_app`) does not build it.
    """
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
