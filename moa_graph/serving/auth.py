"""LangGraph's own API behind the operator's key: the custom auth handler of langgraph.json.

LangGraph's server (``langgraph dev``, a deployment) runs `auth` for every request to its API:
runs, threads, assistants, crons, the store, ``/mcp`` and ``/a2a`` (``/v1`` has its own check,
the same keys). It is off unless the operator sets ``MOA_SERVE_AUTH=true``; then

- a request must present ``MOA_API_KEY`` or ``MOA_ADMIN_KEY`` (`moa_graph.serving.keys`), else
  401; with ``MOA_SERVE_AUTH=true`` and no ``MOA_API_KEY`` every request is refused;
- creating, changing or deleting assistants and crons needs ``MOA_ADMIN_KEY`` (403 otherwise):
  a saved assistant is served to every client (``/mcp`` lists it as a tool), and a cron starts
  runs on its own.

langgraph.json sets ``disable_studio_auth``: otherwise a request that says it comes from Studio
(``x-auth-scheme: langsmith``) would skip this handler under ``langgraph dev``. Studio then
connects with the key as a custom header (docs: "Serving", "Who may call LangGraph's API").
LangGraph's guide: https://docs.langchain.com/langsmith/custom-auth
"""

import os
from typing import Any

from langgraph_sdk import Auth

from moa_graph.serving.keys import ADMIN_KEY_ENV, API_KEY_ENV, is_key, presented_key

AUTH_ENV = "MOA_SERVE_AUTH"
EDIT = "moa:edit"
"""The permission to create, change or delete assistants and crons."""

auth = Auth()


def auth_required() -> bool:
    """Return True when ``MOA_SERVE_AUTH`` is true (read at each request)."""
    return os.environ.get(AUTH_ENV, "").strip().lower() in ("1", "true", "yes")


@auth.authenticate
async def authenticate(headers: dict[bytes, bytes]) -> Auth.types.MinimalUserDict:
    """Let in a request that presents the operator's key (any request when auth is off).

    Raises:
        Auth.exceptions.HTTPException: 401 when ``MOA_SERVE_AUTH`` is true and the request
            presents neither ``MOA_API_KEY`` nor ``MOA_ADMIN_KEY``.
    """
    if not auth_required():
        return {"identity": "anonymous", "permissions": [EDIT]}
    key = presented_key(
        {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in headers.items()}
    )
    if is_key(key, ADMIN_KEY_ENV):
        return {"identity": "operator", "permissions": [EDIT]}
    if is_key(key, API_KEY_ENV):
        return {"identity": "client", "permissions": []}
    raise Auth.exceptions.HTTPException(
        status_code=401,
        detail="this server needs its API key: send 'Authorization: Bearer <key>' or "
        "'x-api-key: <key>'",
    )


async def operators_only(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Let only the operator's key change assistants and crons.

    Raises:
        Auth.exceptions.HTTPException: 403 for a request authenticated with ``MOA_API_KEY``.
    """
    if EDIT not in ctx.permissions:
        raise Auth.exceptions.HTTPException(
            status_code=403,
            detail=f"only the operator ({ADMIN_KEY_ENV}) may create, change or delete "
            f"{ctx.resource}",
        )


auth.on.assistants.create(operators_only)
auth.on.assistants.update(operators_only)
auth.on.assistants.delete(operators_only)
auth.on.crons.create(operators_only)
auth.on.crons.update(operators_only)
auth.on.crons.delete(operators_only)
