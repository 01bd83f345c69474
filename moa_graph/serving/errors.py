"""OpenAI-shaped errors of the API: the error JSON, status codes, request ids, the key check."""

import logging
import os
import uuid
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from moa_graph.errors import AggregatorError, ProposerQuorumError
from moa_graph.serving.keys import ADMIN_KEY_ENV, API_KEY_ENV, is_key, presented_key

log = logging.getLogger("moa_graph.serving")


class APIError(Exception):
    """An error answered as OpenAI's error JSON."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        *,
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status,
            message,
            kind,
            param,
            code,
        )

    def body(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` object."""
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


def run_failed(error: BaseException) -> APIError:
    """Return the 500 for a run that failed; the details go to the server's log only.

    A failed run's error holds the providers' own texts (``Error code: 500 - ...``), which may
    name internals: the client gets a stable ``code`` (``proposers_failed``,
    ``aggregator_failed``, ``run_failed``) and the request id that finds the log line.
    """
    code = _RUN_CODES.get(type(error).__name__, "run_failed")
    request = request_id()
    log.error("%s %s: %s", request, code, error, exc_info=not isinstance(error, _KNOWN))
    return APIError(
        500,
        f"the MoA run failed ({type(error).__name__}); the server's log has the details under "
        f"request id {request}",
        "server_error",
        code=code,
    )


_KNOWN = (ProposerQuorumError, AggregatorError)
_RUN_CODES = {"ProposerQuorumError": "proposers_failed", "AggregatorError": "aggregator_failed"}
REQUEST_ID_HEADER = "x-request-id"
_request_id: ContextVar[str] = ContextVar("moa_request_id", default="-")


def request_id() -> str:
    """Return the id of the request being answered (``-`` outside one)."""
    return _request_id.get()


class RequestIds:
    """ASGI middleware: give each request an id, in the ``x-request-id`` header and the log."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request with its id in the response's headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = f"req_{uuid.uuid4().hex}"
        # Not reset: each request runs in its own task, and Starlette's handler of unexpected
        # errors (outside this middleware) logs the id too.
        _request_id.set(request)
        header = (REQUEST_ID_HEADER.encode(), request.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, send_with_id)


async def check_key(request: Request) -> None:
    """Refuse a request without the operator's key when ``MOA_API_KEY`` is set (401).

    The key is presented as ``Authorization: Bearer <key>`` or ``x-api-key``
    (`moa_graph.serving.keys`); ``MOA_ADMIN_KEY`` is accepted too.
    """
    if not os.environ.get(API_KEY_ENV):
        return
    given = presented_key(request.headers)
    if not (is_key(given, API_KEY_ENV) or is_key(given, ADMIN_KEY_ENV)):
        raise APIError(
            401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key"
        )


def install_handlers(app: FastAPI) -> None:
    """Answer every error of `app` as OpenAI's error JSON.

    A 5xx carries ``x-should-retry: false``: the openai client would otherwise run a whole MoA
    again, twice.
    """
    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _server_error)


def _error_response(error: APIError) -> JSONResponse:
    headers = {"x-should-retry": "false"} if error.status >= 500 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def _api_error(request: Request, error: APIError) -> JSONResponse:
    return _error_response(error)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    [first, *_] = error.errors() or [{"loc": (), "msg": "invalid request"}]
    param = ".".join(str(p) for p in first["loc"] if p != "body") or None
    return _error_response(
        APIError(400, f"{param}: {first['msg']}", "invalid_request_error", param=param)
    )


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return _error_response(APIError(error.status_code, str(error.detail), "invalid_request_error"))


async def _server_error(request: Request, error: Exception) -> JSONResponse:
    log.error("%s internal error", request_id(), exc_info=error)
    message = f"internal server error; the server's log has it under request id {request_id()}"
    return _error_response(APIError(500, message, "server_error", code="internal_error"))
