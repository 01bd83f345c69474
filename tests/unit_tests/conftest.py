"""Fixtures shared by the unit tests."""

from collections.abc import Iterator

import pytest

from tests.eval_scripted import scripted
from tests.scripted_openai_server import ScriptedOpenAIServer


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedOpenAIServer]:
    """The evaluation's scripted systems and judge (`tests.eval_scripted`), for `openai:` specs.

    A test module with a `server` fixture of its own uses that one instead.
    """
    running = scripted().start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", running.url)
    yield running
    running.stop()
