"""The FastAPI app: OpenAI's API shapes over one MoA pipeline, under ``/v1``.

``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``,
``POST /v1/responses`` (the Responses API, stateless) and ``POST /v1/completions``. Every
shape becomes a `moa_graph.serving.requests.ChatRequest`, is checked by the one code path
(`moa_graph.serving.requests.prepare`: the trust policy, budgets and schema checks), runs
through `moa_graph.serving.answers` and is rendered in its own shape
(`moa_graph.serving.chat_shape`, `moa_graph.serving.responses_shape`). Any other path under
``/v1`` is an OpenAI-shaped 404 naming what this server offers.
"""

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from langchain_core.messages import BaseMessage
from langgraph.graph.state import CompiledStateGraph
from pydantic import Field

from moa_graph.context import MoAContext
from moa_graph.graph import build_moa_graph
from moa_graph.serving.answers import Event, answer, answer_events
from moa_graph.serving.catalog import (
    WORKERS_ENV,
    ServedModel,
    assistants_file,
    find_model,
    model_card,
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
    "POST /v1/completions"
)


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
        A FastAPI app with the routes of the module docstring.
    """
    moa: CompiledStateGraph[Any, Any, Any, Any] = graph or build_moa_graph().compile(name="moa")
    catalog = models if models is not None else served_models(assistants_file())
    policy = policy or RequestPolicy.from_environment()
    workers = int(os.environ.get(WORKERS_ENV, "1"))
    heartbeat_s = float(os.environ.get("MOA_SERVE_HEARTBEAT_S", "0.5"))
    report_oversized(catalog, policy)
    limit = asyncio.Semaphore(int(os.environ.get("MOA_MAX_CONCURRENT_REQUESTS", "16")))
    app = FastAPI(title="moa-graph OpenAI-compatible API")
    app.add_middleware(BodyLimit, max_bytes=policy.max_body_bytes)
    app.add_middleware(RequestIds)  # outermost: every answer carries its id
    router = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    async def run(
        body: ChatRequest,
        whole: Callable[[Any], dict[str, Any]],
        streamed: Callable[[AsyncIterator[Event]], AsyncIterator[str]],
    ) -> JSONResponse | StreamingResponse:
        """The one pipeline: prepare (off the loop), admit, run, render in the shape asked."""
        served = find_model(catalog, body.model)
        messages, context, form = await asyncio.to_thread(prepare, body, served, policy, workers)
        if limit.locked():
            raise APIError(
                429, "the server is at its limit of concurrent requests; retry later",
                "requests", code="rate_limit_exceeded",
            )  # fmt: skip
        if body.stream:
            events = _admitted(limit, messages, context, form, moa, heartbeat_s)
            return StreamingResponse(streamed(events), media_type="text/event-stream")
        async with limit:
            reply = await answer(moa, messages, context, form)
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

    @router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def not_offered(path: str, request: Request) -> JSONResponse:
        raise APIError(
            404, f"{request.method} /v1/{path} is not offered by this server; it offers "
            f"{OFFERED}", "invalid_request_error", code="not_found",
        )  # fmt: skip

    app.include_router(router)
    install_handlers(app)
    return app


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


async def _admitted(
    limit: asyncio.Semaphore,
    messages: list[BaseMessage],
    context: MoAContext,
    form: AnswerForm,
    graph: CompiledStateGraph[Any, Any, Any, Any],
    heartbeat_s: float,
) -> AsyncIterator[Event]:
    """The run's events while it holds one of the server's concurrent slots."""
    async with limit:
        async for event in answer_events(graph, messages, context, form, heartbeat_s):
            yield event


app = create_app()
"""The app ``langgraph dev`` loads (langgraph.json ``http.app``) and ``moa-graph serve`` runs."""
