"""`ChatMoA` over HTTP: spec-built models talk to a scripted OpenAI-compatible server.

The usage on the reply is checked against the tokens the server counted, call by call.
"""

from collections.abc import Iterator

import pytest

from moa_graph import ChatMoA, MoAContext
from tests.scripted_openai_server import Fault, ScriptedOpenAIServer

pytestmark = pytest.mark.integration


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedOpenAIServer]:
    def script(body: dict) -> "str | Fault":
        if body["model"] == "down":
            return Fault(503)
        return "The final answer." if body["model"] == "agg" else f"proposal from {body['model']}"

    running = ScriptedOpenAIServer(script).start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", running.url)
    yield running
    running.stop()


def moa(*proposers: str) -> ChatMoA:
    context = MoAContext(proposers=list(proposers), aggregator="openai:agg", retries=0)
    return ChatMoA(context=context)


def test_the_usage_is_what_the_server_counted(server: ScriptedOpenAIServer) -> None:
    reply = moa("openai:a", "openai:b").invoke("Name a colour.")
    assert reply.content == "The final answer."
    usage = reply.usage_metadata
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"]) == (
        server.usage["input_tokens"], server.usage["output_tokens"],
    )  # fmt: skip
    assert len(server.requests) == 3
    aggregator_prompt = server.requests[-1]["messages"]
    assert "proposal from a" in str(aggregator_prompt) and "proposal from b" in str(
        aggregator_prompt
    )


async def test_streams_the_aggregators_tokens_and_says_when_the_panel_shrank(server) -> None:
    chunks = [c async for c in moa("openai:a", "openai:down").astream("Name a colour.")]
    assert "".join(c.text for c in chunks) == "The final answer."
    meta = chunks[-1].response_metadata
    assert (meta["proposals_answered"], meta["proposals_asked"], meta["degraded"]) == (1, 2, True)
    assert server.requests[-1]["stream"] is True
