"""LangChain's standard integration tests for chat models, run on `ChatMoA` over HTTP.

`openai:` specs talk to a scripted OpenAI-compatible server that answers deterministically:
proposers in text; the aggregator (``agg``), given tools, calls the forced tool (else the
first) with arguments taken from the question, until it sees a tool result, and otherwise
answers in text. langchain-tests is pinned in the dev extra (new releases add tests).
"""

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_tests.integration_tests import ChatModelIntegrationTests
from pydantic import BaseModel
from typing_extensions import TypedDict

from moa_graph import ChatMoA
from tests.scripted_openai_server import (
    ScriptedOpenAIServer,
    ToolCall,
    forced_call,
    question_of,
)
from tests.standard_chat_model import ChatMoASettings

pytestmark = pytest.mark.integration


def standard_script(body: dict[str, Any]) -> "str | ToolCall":
    question = question_of(body)
    if body["model"] != "agg":
        return f"A proposal about: {question[:60]}"
    no_call = body["messages"][-1]["role"] == "tool" or body.get("tool_choice") == "none"
    if body.get("tools") and not no_call:
        return forced_call(body)
    return "Hello! Here is the answer: 3."


@pytest.fixture(scope="module")
def scripted_openai() -> Iterator[ScriptedOpenAIServer]:
    server = ScriptedOpenAIServer(standard_script).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def openai_env(monkeypatch: pytest.MonkeyPatch, scripted_openai: ScriptedOpenAIServer) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", scripted_openai.url)


class TestChatMoAStandard(ChatMoASettings, ChatModelIntegrationTests):
    @pytest.mark.xfail(
        reason="ChatMoA(stop=...): run settings go in its MoAContext; as arguments they are "
        "refused with that fix rather than ignored",
        strict=True,
    )
    def test_stop_sequence(self, model: ChatMoA) -> None:
        super().test_stop_sequence(model)

    # The callback sees one chat-model start per call of the run: ChatMoA's own, then each
    # proposer's and the aggregator's, nested under it so traces show the panel. The test
    # counts them all; test_each_schema_kind_on_invoke_and_stream below checks the rest.
    CALLBACK_COUNT = (
        "on_chat_model_start also fires for the proposers and the aggregator, whose runs nest "
        "under ChatMoA's run; the test expects one"
    )

    @pytest.mark.xfail(reason=CALLBACK_COUNT, strict=True)
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    def test_structured_output(self, model: ChatMoA, schema_type: Any) -> None:
        super().test_structured_output(model, schema_type)

    @pytest.mark.xfail(reason=CALLBACK_COUNT, strict=True)
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    async def test_structured_output_async(self, model: ChatMoA, schema_type: Any) -> None:
        await super().test_structured_output_async(model, schema_type)


class Joke(BaseModel):
    setup: str
    punchline: str


class JokeDict(TypedDict):
    setup: str
    punchline: str


class ModelStarts(BaseCallbackHandler):
    """Records the options of every chat-model start, by model type."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, dict[str, Any]]] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        kind = (kwargs.get("invocation_params") or {}).get("_type", "")
        self.starts.append((kind, kwargs.get("options") or {}))


@pytest.mark.parametrize("schema", [Joke, JokeDict, Joke.model_json_schema()])
def test_each_schema_kind_on_invoke_and_stream(schema: Any) -> None:
    chat = ChatMoA(**TestChatMoAStandard().chat_model_params).with_structured_output(schema)
    starts = ModelStarts()
    answers = [
        chat.invoke("Tell me a joke about cats.", config={"callbacks": [starts]}),
        *chat.stream("Tell me a joke about cats.", config={"callbacks": [starts]}),
    ]
    for answer in answers:
        fields = answer.model_dump() if isinstance(answer, BaseModel) else answer
        assert set(fields) == {"setup", "punchline"}
    outer = [options for kind, options in starts.starts if kind == "moa"]
    assert len(outer) == 2  # one ChatMoA run per call; the others are its inner calls
    assert all(options["ls_structured_output_format"]["schema"] for options in outer)
    assert len(starts.starts) == 2 * 4  # each run: ChatMoA, two proposers, the aggregator
