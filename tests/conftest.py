import os
from collections.abc import Callable, Iterator

import pytest

from moa_graph.models import clear_model_cache
from tests.scripted_openai_server import Script, ScriptedOpenAIServer


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's MOA_* settings, keys and LangSmith tracing out of every test."""
    for name in list(os.environ):
        if name.startswith(("MOA_", "OPENAI_", "AWS_", "LANGSMITH_", "LANGCHAIN_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    # boto3 must not find the developer's profiles nor ask an instance metadata service.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Models are cached per spec; a cached one would keep another test's environment.
    clear_model_cache()


@pytest.fixture
def openai_upstream(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[Script], ScriptedOpenAIServer]]:
    """Start a scripted OpenAI-compatible server for `openai:` specs (OPENAI_BASE_URL, a key)."""
    started: list[ScriptedOpenAIServer] = []

    def start(script: Script) -> ScriptedOpenAIServer:
        server = ScriptedOpenAIServer(script).start()
        started.append(server)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        return server

    yield start
    for server in started:
        server.stop()
