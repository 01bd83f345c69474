"""uvicorn's HTTP protocol with deadlines for a request's head and body, and a bound on connections.

A client that opens a connection and sends its request slowly holds a socket (and a file
descriptor) for as long as it likes: uvicorn has a keep-alive timeout between requests but none
while it reads a request's head, and none for its body. ``moa-graph serve`` runs
`DeadlineProtocol` (uvicorn's ``httptools`` protocol, subclassed):

- ``MOA_SERVE_HEADER_TIMEOUT_S`` (default 10): a connection whose request head is not complete
  this long after it opened (or after the request began) gets 408 and is closed.
- ``MOA_SERVE_BODY_TIMEOUT_S`` (default 30): a request whose body is not complete this long
  after its head gets 408 (unless a response has started) and is closed.
- ``MOA_SERVE_MAX_CONNECTIONS`` (default half the process's open-file limit, at most 4096): a
  connection over this many open ones gets 503 at once and is closed, so that the process keeps
  descriptors for honest clients and its own work.

The figures of a slow-client attack, before and after, are in the serving docs
("Slow clients").
"""

import asyncio
import os
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_ENV = "MOA_SERVE_HEADER_TIMEOUT_S"
BODY_TIMEOUT_ENV = "MOA_SERVE_BODY_TIMEOUT_S"
MAX_CONNECTIONS_ENV = "MOA_SERVE_MAX_CONNECTIONS"

_REFUSED = {
    408: b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    503: b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
}


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    value = float(raw) if raw else default
    if value <= 0:
        raise ValueError(f"{name}={raw!r}: must be a number of seconds > 0")
    return value


def default_max_connections() -> int:
    """Half the soft open-file limit of this process, at most 4096."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(8, min(4096, soft // 2)) if soft > 0 else 4096


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline per request head and body (see module)."""

    header_timeout_s = _seconds(HEADER_TIMEOUT_ENV, 10.0)
    body_timeout_s = _seconds(BODY_TIMEOUT_ENV, 30.0)
    max_connections = int(os.environ.get(MAX_CONNECTIONS_ENV) or default_max_connections())

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse a connection over the bound (503); else start the head's deadline."""
        if len(self.connections) >= self.max_connections:
            transport.write(_REFUSED[503])
            transport.close()
            return
        super().connection_made(transport)
        self._arm(self.header_timeout_s)

    def on_message_begin(self) -> None:
        """A request begins (again on a kept-alive connection): its head has a deadline."""
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self.header_timeout_s)

    def on_headers_complete(self) -> None:
        """The head is complete: its body has a deadline now."""
        self._arm(self.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The body is complete: no deadline until the next request begins."""
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline with the connection."""
        self._disarm()
        if getattr(self, "transport", None) is not None:  # refused over the bound: never set up
            super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_REFUSED[408])
        self.transport.close()
