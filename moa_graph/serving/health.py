"""Liveness and readiness of ``moa-graph serve``, for a load balancer or a Kubernetes probe.

``GET /healthz`` answers 200 while the process runs. ``GET /readyz`` answers 200 when the
server can answer: every served model's models are built (creating them starts the embedded
server when one is used, as a first request would) and the embedded server answers; else 503
with the served model ids that are not ready. Neither needs the API key, and neither says more
than a model id and an error type (the details go to the server's log).
"""

import logging
import urllib.error
import urllib.request

from moa_graph.call_plan import ModelSource
from moa_graph.local_server import local_base_url
from moa_graph.serving.catalog import ServedModel, local_models

log = logging.getLogger("moa_graph.serving")

PROBE_TIMEOUT_S = 2.0
"""Seconds the readiness check waits for the embedded server's answer."""


def not_ready(catalog: dict[str, ServedModel]) -> list[str]:
    """Return what keeps the server from answering: ``"<model id>: <error type>"`` lines.

    Blocking (it may start the embedded server): run it in a thread. An empty list is ready.
    """
    problems = []
    source = ModelSource(None, None)
    for served in catalog.values():
        try:
            source.create_all(served.context({}))
        except Exception as exc:
            log.warning("readyz: model %r is not ready: %s: %s", served.id, type(exc).__name__, exc)
            problems.append(f"{served.id}: {type(exc).__name__}")
    for name in sorted(local_models(catalog)):
        try:
            url = local_base_url(name)
            with urllib.request.urlopen(f"{url}/models", timeout=PROBE_TIMEOUT_S) as response:
                answered = response.status == 200
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            log.warning("readyz: the embedded server of local:%s does not answer: %s", name, exc)
            answered = False
        if not answered:
            problems.append(f"local:{name}: the embedded server does not answer")
    return problems
