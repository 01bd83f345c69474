"""Capture what LangSmith tracing would send, offline.

The pattern of langgraph's own tracing tests: a `langsmith.Client` whose HTTP session is a
mock, given to `langsmith.tracing_context(enabled=True, client=...)`.
"""

import json
from typing import Any
from unittest.mock import MagicMock

import langsmith
from langchain_core.tracers.langchain import wait_for_all_tracers


class CapturedTraces:
    """A LangSmith client that records the runs it would post instead of sending them."""

    def __init__(self) -> None:
        self.session = MagicMock()
        self.client = langsmith.Client(
            session=self.session,
            api_key="test",
            api_url="http://langsmith.invalid",
            auto_batch_tracing=False,
        )

    def bodies(self) -> list[str]:
        """Every request body sent (run creations and updates), as text."""
        wait_for_all_tracers()
        bodies = []
        for call in self.session.request.mock_calls:
            data = call.kwargs.get("data")
            if data is not None:
                bodies.append(data.decode() if isinstance(data, bytes) else str(data))
        return bodies

    def runs(self) -> list[dict[str, Any]]:
        """The runs, in creation order, each its POST body updated with its PATCH bodies."""
        runs: dict[str, dict[str, Any]] = {}
        for body in self.bodies():
            run = json.loads(body)
            runs.setdefault(run["id"], {}).update({k: v for k, v in run.items() if v is not None})
        return list(runs.values())
