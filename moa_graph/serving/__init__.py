"""MoA as an OpenAI-compatible API (``moa-graph serve``, ``langgraph dev``).

`moa_graph.serving.app.app` is a FastAPI app with ``GET /v1/models``, ``GET /v1/models/{id}``,
``POST /v1/chat/completions``, ``POST /v1/responses``, ``POST /v1/completions`` and
``POST /v1/messages`` (Anthropic's Messages API);
``langgraph dev`` serves it beside the LangGraph API (langgraph.json ``http.app``) and
``moa-graph serve`` runs it with uvicorn, with ``GET /healthz``, ``GET /readyz`` and
``GET /metrics`` added (`moa_graph.serving.app.serve_app`). Each request is
stateless: the whole conversation in, one answer out. Needs the ``serve`` extra (FastAPI,
uvicorn) outside ``langgraph dev``.

Settings: ``MOA_API_KEY`` (a bearer key; unset = open), ``MOA_MAX_CONCURRENT_REQUESTS``
(default 16 per worker; more get 429), ``MOA_SERVE_HEARTBEAT_S`` (default 0.5),
``MOA_SERVE_ASSISTANTS`` (a studio/assistants.json file whose ``moa`` assistants become models;
unset: none). What a request's ``moa`` object may set, and every request's
budget, are the operator's: ``MOA_SERVE_ALLOW_FIELDS``, ``MOA_SERVE_ALLOW_MODELS`` and
``MOA_SERVE_MAX_*`` (`moa_graph.trust`; README "The trust boundary"). Operations:
``MOA_SERVE_METRICS`` (``key``, ``open`` or ``off``), ``MOA_LIMITS_STORE`` (where ``rpm`` and
``tpm`` are held: `moa_graph.limit_store`).
"""
