"""OpenAI-shaped errors of the API: the error JSON, status codes, the bearer key check."""

import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from moa_graph.errors import AggregatorError, ProposerQuorumError
from moa_graph.serving.keys import ADMIN_KEY_ENV, API_KEY_ENV, is_key, presented_key


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
    """Return the 500 for a run that failed; only moa-graph's own messages are shown."""
    # Only moa-graph's own messages are shown: others may carry internal details.
    known = (ProposerQuorumError, AggregatorError)
    detail = str(error).split("\nDuring task")[0] if isinstance(error, known) else ""
    message = f"the MoA run failed: {type(error).__name__}" + (f": {detail}" if detail else "")
    return APIError(500, message, "server_error")


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
    return _error_response(APIError(500, "internal server error", "server_error"))
