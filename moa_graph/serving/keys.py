"""The operator's API keys, and the key a request presents: one check for `/v1` and LangGraph's API.

``MOA_API_KEY`` lets a client in; ``MOA_ADMIN_KEY`` also lets it change what LangGraph's server
serves (assistants, crons; `moa_graph.serving.auth`). A request presents its key as
``Authorization: Bearer <key>`` (OpenAI's and LangGraph's clients) or ``x-api-key: <key>``
(LangGraph's SDK, Anthropic's). Keys are compared in constant time.
"""

import os
import secrets
from collections.abc import Mapping

API_KEY_ENV = "MOA_API_KEY"
ADMIN_KEY_ENV = "MOA_ADMIN_KEY"


def presented_key(headers: Mapping[str, str]) -> str | None:
    """Return the key a request presents, or None when it presents none.

    Args:
        headers: The request's headers, names in lower case.

    Returns:
        The text after ``Bearer `` of ``authorization``, else ``x-api-key``; an
        ``authorization`` header without the ``Bearer`` scheme presents no key.
    """
    authorization = headers.get("authorization", "").strip()
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    return headers.get("x-api-key", "").strip() or None


def is_key(given: str | None, env: str) -> bool:
    """Return True when `given` equals the key the variable `env` holds (a set, non-empty one)."""
    expected = os.environ.get(env, "")
    return (
        bool(expected)
        and given is not None
        and secrets.compare_digest(given.encode(), expected.encode())
    )
