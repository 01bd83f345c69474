from collections.abc import Iterator

import pytest

from moa_graph.local_server import local_base_url
from tests.bedrock_converse_endpoint import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    ConverseEndpoint,
)
from tests.serve_process import Listener, Upstream

OPENAI_KEY = "sk-moa-graph-test-0123456789abcdef-do-not-leak"
"""A key-like value: tests check it never reaches a trace, the state or a checkpoint."""


@pytest.fixture(scope="session")
def embedded_url() -> str:
    """The embedded model's OpenAI-compatible base URL (the server this process started)."""
    return local_base_url("smollm2")


@pytest.fixture(scope="session")
def converse_endpoint(embedded_url: str) -> Iterator[ConverseEndpoint]:
    endpoint = ConverseEndpoint(embedded_url).start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def hosted_env(
    monkeypatch: pytest.MonkeyPatch, embedded_url: str, converse_endpoint: ConverseEndpoint
) -> ConverseEndpoint:
    """`openai:` and `bedrock_converse:` specs reach local endpoints, as a user would set it."""
    monkeypatch.setenv("OPENAI_BASE_URL", embedded_url)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", converse_endpoint.url)
    return converse_endpoint


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """A scripted OpenAI-compatible upstream for the served models (one per test module)."""
    scripted = Upstream()
    yield scripted
    scripted.server.stop()


@pytest.fixture(scope="module")
def attacker() -> Iterator[Listener]:
    """A listener standing in for an attacker's server: it must receive nothing."""
    listener = Listener()
    yield listener
    listener.close()
