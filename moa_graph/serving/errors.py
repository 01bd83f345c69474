"""Errors of the API: the error JSON of each shape, status codes, request ids, the key check.

OpenAI's error JSON everywhere but ``/v1/messages``, which answers Anthropic's.
"""

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

    def body(self, path: str = "") -> dict[str, Any]:
        """The error JSON of the API shape the request `path` speaks.

        Anthropic's (`anthropic_error`) at and under ``/v1/messages``, else OpenAI's
        ``{"error": {"message", "type", "param", "code"}}``.
        """
        if path == ANTHROPIC_PATH or path.startswith(f"{ANTHROPIC_PATH}/"):
            return anthropic_error(self)
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


ANTHROPIC_PATH = "/v1/messages"
"""The route that speaks Anthropic's Messages API (`moa_graph.serving.anthropic_shape`)."""
_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    529: "overloaded_error",
}  # fmt: skip


def anthropic_error(error: APIError) -> dict[str, Any]:
    """Anthropic's error object, ``{"type": "error", "error": {"type", "message"}}``.

    The type follows the status (docs.anthropic.com/en/api/errors; ``api_error`` for a 5xx);
    the message names the parameter when OpenAI's shape would carry it apart.
    """
    kind = _ANTHROPIC_TYPES.get(error.status, "api_error" if error.status >= 500 else
                                "invalid_request_error")  # fmt: skip
    message = error.message
    if error.param and error.param not in message:
        message = f"{error.param}: {message}"
    return {"type": "error", "error": {"type": kind, "message": message}}


def invalid_param(param: str, message: str) -> APIError:
    """A 400 ``invalid_request_error`` naming `param`: ``"<param> <message>"``."""
    return APIError(400, f"{param} {message}", "invalid_request_error", param=param)


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


def error_response(error: APIError, path: str) -> JSONResponse:
    """The response of `error` to a request for `path`, in that route's API shape."""
    headers = {"x-should-retry": "false"} if error.status >= 500 else None
    return JSONResponse(error.body(path), status_code=error.status, headers=headers)


async def _api_error(request: Request, error: APIError) -> JSONResponse:
    return error_response(error, request.url.path)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    [first, *_] = error.errors() or [{"loc": (), "msg": "invalid request"}]
    param = ".".join(str(p) for p in first["loc"] if p != "body") or None
    return error_response(
        APIError(400, f"{param}: {first['msg']}", "invalid_request_error", param=param),
        request.url.path,
    )


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    status = APIError(error.status_code, str(error.detail), "invalid_request_error")
    return error_response(status, request.url.path)


async def _server_error(request: Request, error: Exception) -> JSONResponse:
    log.error("%s internal error", request_id(), exc_info=error)
    message = f"internal server error; the server's log has it under request id {request_id()}"
    return error_response(
        APIError(500, message, "server_error", code="internal_error"), request.url.path
    )
