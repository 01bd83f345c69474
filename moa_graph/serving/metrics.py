"""Prometheus metrics of ``moa-graph serve``, through prometheus-client.

``GET /metrics`` answers in Prometheus' text format. Under ``--workers`` every worker writes
its figures into ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, which
``moa-graph serve`` sets up), so a scrape of any worker returns the whole server's figures.

Label values are bounded: served model ids (``none`` before a request names one), the
operator's model labels (``other`` for any model a request chose), and fixed sets of roles,
statuses and refusal reasons; never request text or a string a client chose.

Metrics (Prometheus' conventions: ``_total`` counters, base units):

- ``moa_requests_total{model, status}``: requests under ``/v1`` by HTTP status.
- ``moa_request_duration_seconds{model}``: until the last byte of the answer (histogram).
- ``moa_time_to_first_token_seconds{model}``: streamed answers, until the first text or
  tool-call piece (histogram).
- ``moa_requests_in_flight``: runs being answered now.
- ``moa_model_calls_waiting``: model calls waiting for admission (``rpm``, ``tpm``, the
  embedded server's slot); requests past ``MOA_MAX_CONCURRENT_REQUESTS`` are not queued but
  answered 429 (``moa_requests_total{status="429"}``).
- ``moa_model_calls_total{model, role, status}``: role ``proposer``, ``cascade`` (a
  cascade's first stage), ``aggregator`` or ``judge`` (the fusion judge's analysis); status
  ``ok``, ``failed``, ``timed_out``, ``cut_off`` (stopped at ``max_tokens``) or ``cancelled``
  (cut off by ``first_k``).
- ``moa_tokens_total{model, direction}``: ``input`` and ``output`` tokens the providers
  reported.
- ``moa_degraded_answers_total{model}``: answers made from fewer proposals than asked for.
- ``moa_refusals_total{reason}``: requests the trust policy refused (`moa_graph.trust`):
  ``not_allowed``, ``over_budget``, ``bad_schema`` or ``unknown_setting``.
"""

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from moa_graph import limits
from moa_graph.run_summary import RunSummary, proposal_digest
from moa_graph.state import FIRST_STAGE
from moa_graph.trust import RequestRefused

METRICS_ENV = "MOA_SERVE_METRICS"
"""Who may read ``/metrics``: ``key`` (default: as ``/v1``, the API key when one is set),
``open`` (anyone who reaches the port: a scraper on a private network) or ``off``."""
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's folder of the workers' figures (set by ``moa-graph serve --workers``)."""

NO_MODEL = "none"
OTHER_MODEL = "other"
_SECONDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
_STATUS = {"ok": "ok", "failed": "failed", "timeout": "timed_out", "cancelled": "cancelled"}

REQUESTS = Counter("moa_requests", "Requests under /v1 by served model and HTTP status.",
                   ["model", "status"])  # fmt: skip
REQUEST_SECONDS = Histogram(
    "moa_request_duration_seconds", "Seconds until the answer's last byte.", ["model"],
    buckets=_SECONDS,
)  # fmt: skip
FIRST_TOKEN_SECONDS = Histogram(
    "moa_time_to_first_token_seconds", "Streamed answers: seconds until the first piece.",
    ["model"], buckets=_SECONDS,
)  # fmt: skip
IN_FLIGHT = Gauge("moa_requests_in_flight", "Runs being answered now.",
                  multiprocess_mode="livesum")  # fmt: skip
CALLS_WAITING = Gauge(
    "moa_model_calls_waiting", "Model calls waiting for admission (rpm, tpm, a server slot).",
    multiprocess_mode="livesum",
)  # fmt: skip
CALLS = Counter("moa_model_calls", "Model calls by model label, role and status.",
                ["model", "role", "status"])  # fmt: skip
TOKENS = Counter("moa_tokens", "Tokens the providers reported, by model label.",
                 ["model", "direction"])  # fmt: skip
DEGRADED = Counter("moa_degraded_answers", "Answers made from fewer proposals than asked for.",
                   ["model"])  # fmt: skip
REFUSALS = Counter("moa_refusals", "Requests the trust policy refused, by reason.", ["reason"])

limits.observe_waiting(CALLS_WAITING.inc)


def exposition() -> tuple[bytes, str]:
    """Return the figures in Prometheus' text format and its content type.

    Under ``--workers``, the sum over every worker (prometheus-client's multiprocess mode).
    """
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


@contextlib.asynccontextmanager
async def worker_lifespan(app: Any) -> AsyncIterator[None]:
    """An ASGI lifespan that, as a worker stops, drops its share of the live gauges.

    (prometheus-client's ``mark_process_dead``; counters and histograms keep their figures.)
    """
    yield
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def observe_request(model: str | None, status: int, seconds: float) -> None:
    """Count one finished request under ``/v1`` (`model`: a served id, or None)."""
    REQUESTS.labels(model=model or NO_MODEL, status=str(status)).inc()
    REQUEST_SECONDS.labels(model=model or NO_MODEL).observe(seconds)


def observe_first_piece(model: str, seconds: float) -> None:
    """Record the time to the first text or tool-call piece of a streamed answer."""
    FIRST_TOKEN_SECONDS.labels(model=model).observe(seconds)


def observe_run(summary: RunSummary, model: str, known: Iterable[str]) -> None:
    """Count a finished run's model calls, tokens and whether its panel shrank.

    Args:
        summary: The run's summary.
        model: The served model id.
        known: The operator's model labels; any other is counted as ``other``.
    """
    label = _labeller(known)
    _observe_proposals(summary["proposals"], label)
    aggregation = summary["aggregation"]
    calls = aggregation["calls"]
    if calls:
        name = label(aggregation["model"] or "")
        status = "cut_off" if summary["cut_off"] and aggregation["mode"] != "select" else "ok"
        if aggregation["requested_mode"] == "analyze":
            CALLS.labels(model=name, role="judge", status="ok").inc()
            calls -= 1
        CALLS.labels(model=name, role="aggregator", status=status).inc(calls)
    for name, usage in summary["usage_by_model"].items():
        TOKENS.labels(model=label(name), direction="input").inc(usage["input_tokens"])
        TOKENS.labels(model=label(name), direction="output").inc(usage["output_tokens"])
    if summary["degraded"]:
        DEGRADED.labels(model=model).inc()


def observe_failure(error: BaseException, known: Iterable[str]) -> None:
    """Count the calls of a run that failed: its proposals' records, and the failed aggregator.

    `error` is the API's error; the run's own error (`moa_graph.errors.ProposerQuorumError`,
    `moa_graph.errors.AggregatorError`) is its ``__cause__`` and holds the records.
    """
    cause = error.__cause__
    if isinstance(cause, RequestRefused):
        observe_refusal(cause)
        return
    label = _labeller(known)
    _observe_proposals(proposal_digest(getattr(cause, "records", None) or []), label)
    if type(cause).__name__ == "AggregatorError":
        CALLS.labels(model=label(getattr(cause, "model", "") or ""), role="aggregator",
                     status="failed").inc()  # fmt: skip


def observe_refusal(error: RequestRefused) -> None:
    """Count a request the trust policy refused, by its reason."""
    REFUSALS.labels(reason=error.reason).inc()


def _labeller(known: Iterable[str]) -> Callable[[str], str]:
    """A model label as counted: the operator's own, or ``other``."""
    ours = set(known)
    return lambda name: name if name in ours else OTHER_MODEL


def _observe_proposals(digest: list[dict[str, Any]], label: Callable[[str], str]) -> None:
    for p in digest:
        if p["reused"]:
            continue
        role = "cascade" if p["layer"] == FIRST_STAGE else "proposer"
        status = "cut_off" if p["cut_off"] and p["status"] == "ok" else _STATUS[p["status"]]
        CALLS.labels(model=label(p["model"]), role=role, status=status).inc()


@dataclass
class _Request:
    model: str | None = None


_current: ContextVar[_Request | None] = ContextVar("moa_metrics_request", default=None)


def name_model(model: str) -> None:
    """Name the served model of the request being answered (its ``model`` label)."""
    if (request := _current.get()) is not None:
        request.model = model


class RequestMetrics:
    """ASGI middleware: count every request under ``/v1`` by served model and HTTP status.

    Each is timed until its last byte (streamed answers included).
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request, then count it."""
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        request, status, start = _Request(), 500, time.perf_counter()
        token = _current.set(request)

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            _current.reset(token)
            observe_request(request.model, status, time.perf_counter() - start)
