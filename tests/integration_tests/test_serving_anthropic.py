"""`moa-graph serve`'s ``/v1/messages`` driven by the `anthropic` SDK, as its docs say to.

The served models call a scripted OpenAI-compatible upstream (`tests.serve_process`): given
tools, every model calls the first (or forced) tool until a tool result comes back; then the
proposers propose and the aggregator answers `ANSWER`. Every call reports 11 tokens in and 7
out. The embedded model's forced tool choice is tested in test_studio.py (``langgraph dev``
serves the same ``/v1``).
"""

from collections.abc import Iterator

import anthropic
import httpx
import pytest
from pydantic import BaseModel

from tests.serve_process import ANSWER, KEY, Upstream, start_server

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "Add 17 and 25."}]
ADD = {
    "name": "add",
    "description": "Add two integers a and b.",
    "input_schema": {"type": "object", "properties": {"a": {"type": "integer"},
                     "b": {"type": "integer"}}, "required": ["a", "b"]},
}  # fmt: skip


@pytest.fixture(scope="module")
def url(upstream: Upstream) -> Iterator[str]:
    yield from start_server(upstream, MOA_API_KEY=KEY)


@pytest.fixture
def client(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url.removesuffix("/v1"), api_key=KEY, max_retries=0)


def test_a_message_and_its_usage(client: anthropic.Anthropic) -> None:
    done = client.messages.create(
        model="moa",
        max_tokens=256,
        messages=USER,
        system=[{"type": "text", "text": "Answer briefly."}],
        metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.2},
    )  # older clients send it
    assert done.type == "message" and done.role == "assistant" and done.model == "moa"
    assert [b.type for b in done.content] == ["text"] and done.content[0].text == ANSWER
    assert done.stop_reason == "end_turn" and done.stop_sequence is None
    # every call of the run: 2 proposers + the aggregator, 11 in / 7 out each
    assert (done.usage.input_tokens, done.usage.output_tokens) == (33, 21)


def test_a_streamed_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="moa", max_tokens=256, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER and final.content[0].text == ANSWER
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 21


def test_a_tool_loop_runs_to_its_final_text(client: anthropic.Anthropic, upstream) -> None:
    first = client.messages.create(model="moa", max_tokens=256, messages=USER, tools=[ADD])
    assert first.stop_reason == "tool_use"
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "add" and call.input == {"a": 17, "b": 25} and call.id
    turns = [*USER, {"role": "assistant", "content": first.content},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                           "content": "42"}]}]  # fmt: skip
    second = client.messages.create(model="moa", max_tokens=256, messages=turns, tools=[ADD])
    assert second.stop_reason == "end_turn" and second.content[0].text == ANSWER
    sent = upstream.calls("agg")[-1]["messages"]
    assert {"role": "tool", "tool_call_id": call.id, "content": "42"} in sent


def test_a_streamed_tool_call_and_a_forced_choice(client: anthropic.Anthropic, upstream) -> None:
    before = len(upstream.server.requests)
    with client.messages.stream(model="moa", max_tokens=256, messages=USER, tools=[ADD],
                                tool_choice={"type": "tool", "name": "add"}) as stream:  # fmt: skip
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    blocks = [(b.type, b.name, b.input) for b in final.content]
    assert blocks == [("tool_use", "add", {"a": 17, "b": 25})]
    forced = [r for r in upstream.server.requests[before:] if r["model"] == "agg"]
    assert forced[-1]["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    any_tool = client.messages.create(model="moa", max_tokens=256, messages=USER, tools=[ADD],
                                      tool_choice={"type": "any"})  # fmt: skip
    assert any_tool.stop_reason == "tool_use"


class Sum(BaseModel):
    a: int
    b: int


def test_a_typed_answer_through_output_format(client: anthropic.Anthropic, upstream) -> None:
    question = [{"role": "user", "content": "Sum 3 and 4."}]
    parsed = client.messages.parse(model="moa", max_tokens=256, output_format=Sum,
                                   messages=question)  # fmt: skip
    assert parsed.parsed_output == Sum(a=3, b=4) and parsed.stop_reason == "end_turn"
    assert upstream.calls("agg")[-1]["tool_choice"]["function"]["name"] == "output"


def test_a_stop_sequence_ends_the_text(client: anthropic.Anthropic) -> None:
    done = client.messages.create(model="moa", max_tokens=256, messages=USER,
                                  stop_sequences=["synthesized"])  # fmt: skip
    assert done.content[0].text == ANSWER.split("synthesized")[0]
    assert (done.stop_reason, done.stop_sequence) == ("stop_sequence", "synthesized")
    with client.messages.stream(model="moa", max_tokens=256, messages=USER,
                                stop_sequences=["synthesized"]) as stream:  # fmt: skip
        assert "".join(stream.text_stream) == ANSWER.split("synthesized")[0]
        assert stream.get_final_message().stop_reason == "stop_sequence"


def test_errors_come_in_anthropics_shape(client: anthropic.Anthropic, url: str) -> None:
    with pytest.raises(anthropic.AuthenticationError) as denied:
        anthropic.Anthropic(base_url=url.removesuffix("/v1"), api_key="wrong",
                            max_retries=0).messages.create(model="moa", max_tokens=8,
                                                           messages=USER)  # fmt: skip
    assert denied.value.body == {"type": "error", "error": {
        "type": "authentication_error", "message": "Incorrect API key provided."}}  # fmt: skip
    bearer = httpx.post(
        f"{url}/messages",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "moa", "max_tokens": 8, "messages": USER},
        timeout=30,
    )
    assert bearer.status_code == 200  # Authorization: Bearer works beside x-api-key

    counting = httpx.post(f"{url}/messages/count_tokens", headers={"x-api-key": KEY},
                          json={"model": "moa", "messages": USER}, timeout=30)  # fmt: skip
    assert counting.status_code == 404 and counting.json()["error"]["type"] == "not_found_error"
    no_max = httpx.post(f"{url}/messages", headers={"x-api-key": KEY},
                        json={"model": "moa", "messages": USER}, timeout=30)  # fmt: skip
    assert no_max.status_code == 400
    assert no_max.json()["type"] == "error" and "max_tokens" in no_max.json()["error"]["message"]
    moved = {"model": "openai:x", "model_kwargs": {"base_url": "http://127.0.0.1:9/v1"}}
    cases = [
        ({"extra_body": {"moa": {"aggregator": moved}}}, "moa.aggregator"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
         "messages[0].content[0].type"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"extra_body": {"top_k": 5}}, "top_k"),
        ({"container": "c-1"}, "container"),
        ({"model": "nope"}, "nope"),
    ]  # fmt: skip
    for extra, named in cases:
        with pytest.raises(anthropic.APIStatusError) as refused:
            client.messages.create(**{"model": "moa", "max_tokens": 8, "messages": USER, **extra})
        assert refused.value.status_code in (400, 404)
        assert refused.value.body["type"] == "error"
        assert named in refused.value.body["error"]["message"], refused.value.body


def test_a_failed_run_is_an_error_event(client: anthropic.Anthropic, upstream) -> None:
    upstream.fail_proposers = True
    try:
        with (
            pytest.raises(anthropic.APIStatusError) as failed,
            client.messages.stream(model="moa", max_tokens=64, messages=USER) as stream,
        ):
            stream.until_done()
    finally:
        upstream.fail_proposers = False
    assert failed.value.body["error"]["type"] == "api_error"
    assert "proposer" in failed.value.body["error"]["message"].lower()
