import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's MOA_* settings and LangSmith tracing out of every test."""
    for name in list(os.environ):
        if name.startswith("MOA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
