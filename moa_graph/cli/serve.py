"""``moa-graph serve``: the OpenAI-compatible API (`moa_graph.serving`) under uvicorn."""

import argparse
import os
import sys
import tempfile
from typing import Any

from moa_graph.errors import MoAConfigError
from moa_graph.local_server import BASE_URL_ENV, local_base_url


def add_parser(commands: Any) -> None:
    """Add ``serve`` and its options to the `commands` of the main parser."""
    serve = commands.add_parser(
        "serve",
        help="serve MoA as an OpenAI-compatible API (needs the 'serve' extra)",
        description="POST /v1/chat/completions, /v1/responses, /v1/completions, "
        "/v1/messages (Anthropic's shape) and GET /v1/models on HOST:PORT; model 'moa' uses "
        "the MOA_* settings. MOA_API_KEY sets a bearer key. A request may set only the MoA "
        "fields the operator allows "
        "(MOA_SERVE_ALLOW_FIELDS, MOA_SERVE_ALLOW_MODELS), within budgets "
        "(MOA_SERVE_MAX_ROUNDS, _CALLS, _TOKENS, _TIMEOUT_S, _MESSAGES, _BODY_BYTES). "
        "GET /healthz and /readyz need no key; GET /metrics is Prometheus' "
        "(MOA_SERVE_METRICS=key|open|off).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (uvicorn's workers; default 1). They share one rpm/tpm "
        "limiter (MOA_LIMITS_STORE: an SQLite file by default, or Redis for several hosts) "
        "and one embedded model, and /metrics counts them all",
    )
    serve.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    """Serve until stopped; return 0.

    Raises:
        MoAConfigError: The 'serve' extra is missing, or --workers is invalid.
    """
    host, port, workers = args.host, args.port, args.workers
    if workers < 1:
        raise MoAConfigError(f"--workers {workers}: give a whole number >= 1")
    try:
        import uvicorn

        from moa_graph.serving.catalog import assistants_file, local_models, served_models
        from moa_graph.serving.protocol import DeadlineProtocol
    except ImportError as exc:
        raise MoAConfigError(
            f"moa-graph serve needs FastAPI and uvicorn ({exc}): pip install 'moa-graph[serve]'"
        ) from None
    catalog = served_models(assistants_file())
    local = sorted(local_models(catalog))
    if workers > 1 and local and not os.environ.get(BASE_URL_ENV):
        # One embedded server for all workers (each would otherwise start its own).
        if len(local) > 1:
            raise MoAConfigError(
                f"--workers {workers} shares one embedded model, but the served models use "
                f"{local}: serve one, or run your own server and set {BASE_URL_ENV}"
            )
        os.environ[BASE_URL_ENV] = local_base_url(local[0])
    key = "needs MOA_API_KEY" if os.environ.get("MOA_API_KEY") else "open (no MOA_API_KEY)"
    print(
        f"moa-graph serve: http://{host}:{port}/v1 ({workers} worker"
        f"{'s' * (workers > 1)}, {key}); models: {', '.join(catalog)}",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="moa-graph-serve-") as shared:
        if workers > 1:
            _share_among_workers(shared)
        uvicorn.run(
            "moa_graph.serving.app:serve_app", factory=True, host=host, port=port,
            workers=workers, log_level="warning",
            http=DeadlineProtocol,  # deadlines for a request's head and body, bounded connections
        )  # fmt: skip
    return 0


def _share_among_workers(folder: str) -> None:
    """Give the workers one rate limiter and one set of metrics, in `folder` (private, 0700).

    The operator's ``MOA_LIMITS_STORE`` (Redis, for several hosts) and
    ``PROMETHEUS_MULTIPROC_DIR`` are kept when set.
    """
    from moa_graph.limit_store import LIMITS_STORE_ENV
    from moa_graph.serving.metrics import MULTIPROCESS_ENV

    os.environ.setdefault(LIMITS_STORE_ENV, f"sqlite:{os.path.join(folder, 'limits.db')}")
    metrics = os.path.join(folder, "metrics")
    os.makedirs(metrics, exist_ok=True)
    os.environ.setdefault(MULTIPROCESS_ENV, metrics)
