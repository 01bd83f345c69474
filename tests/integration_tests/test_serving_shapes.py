"""Every OpenAI client works: the Responses API, tools with a typed answer, forced tool choices,
every request field accounted for, /v1/completions, and 404s that say what is offered.

`moa-graph serve` over a scripted upstream, driven by the openai SDK and the OpenAI Agents SDK
as their docs say to point them at another server.
"""

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.serve_process import ANSWER, KEY, PROPOSAL, Upstream, start_server

pytestmark = pytest.mark.integration

ADD = {
    "type": "function",
    "name": "add",
    "description": "Add two integers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
}


class Colour(BaseModel):
    name: str


@pytest.fixture(scope="module")
def url(upstream: Upstream) -> Iterator[str]:
    yield from start_server(upstream, MOA_API_KEY=KEY)


@pytest.fixture
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)


def test_responses_create_stream_and_parse(client: openai.OpenAI) -> None:
    done = client.responses.create(model="moa", input="Name a colour.", instructions="Be brief.")
    assert done.output_text == ANSWER and done.status == "completed"
    assert done.usage is not None and done.usage.total_tokens == 3 * 18

    with client.responses.stream(model="moa", input="Name a colour.") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == ANSWER
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    for kind in ("response.output_item.added", "response.content_part.added",
                 "response.output_text.done", "response.content_part.done",
                 "response.output_item.done"):  # fmt: skip
        assert kind in kinds

    parsed = client.responses.parse(model="moa", input="Name 'Red'.", text_format=Colour)
    assert parsed.output_parsed == Colour(name="Red")


def test_responses_tools_and_what_a_stateless_server_refuses(client: openai.OpenAI) -> None:
    called = client.responses.create(model="moa", input="Add 17 and 25.", tools=[ADD],
                                     tool_choice="required")  # fmt: skip
    [call] = [item for item in called.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("add", {"a": 17, "b": 25})
    turn = {"type": "function_call", "call_id": call.call_id, "name": "add",
            "arguments": call.arguments}  # fmt: skip
    answered = client.responses.create(model="moa", tools=[ADD], input=[
        {"role": "user", "content": "Add 17 and 25."}, turn,
        {"type": "function_call_output", "call_id": call.call_id, "output": "42"},
    ])  # fmt: skip
    assert answered.output_text == ANSWER
    for refused in ({"store": True}, {"previous_response_id": "resp_1"}):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="moa", input="hi", **refused)
        assert caught.value.body["param"] == next(iter(refused))


def test_tools_and_a_typed_answer_in_one_request(client: openai.OpenAI, upstream) -> None:
    body = {"model": "moa", "tools": [{"type": "function", "function": {k: ADD[k] for k in (
        "name", "description", "parameters")}}],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "Colour", "schema": Colour.model_json_schema()}}}  # fmt: skip
    first = client.chat.completions.create(**body, messages=[
        {"role": "user", "content": "Add 17 and 25, then name 'Red'."}])  # fmt: skip
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "add"
    second = client.chat.completions.create(**body, messages=[
        {"role": "user", "content": "Add 17 and 25, then name 'Red'."},
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "42"}])  # fmt: skip
    assert second.choices[0].finish_reason == "stop"
    assert Colour.model_validate_json(second.choices[0].message.content) == Colour(name="Red")
    agg = upstream.calls("agg")[-1]
    assert [t["function"]["name"] for t in agg["tools"]] == ["add", "Colour"]
    assert agg["tool_choice"] == "required"


async def test_the_openai_agents_sdk_runs_a_tool_and_returns_its_output_type(url) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)

    @function_tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    class Sum(BaseModel):
        total: int

    model = OpenAIResponsesModel(model="moa", openai_client=openai.AsyncOpenAI(
        base_url=url, api_key=KEY, max_retries=0))  # fmt: skip
    agent = Agent(name="calculator", instructions="Use the add tool.", tools=[add],
                  output_type=Sum, model=model)  # fmt: skip
    result = await Runner.run(agent, "What is 17 + 25?")
    assert isinstance(result.final_output, Sum)
    assert any(getattr(item, "output", None) == 42 for item in result.new_items)  # the tool ran


def test_sampling_fields_reach_the_calls_that_write_the_answer(client, upstream) -> None:
    sampling = {"top_p": 0.5, "frequency_penalty": 0.1, "presence_penalty": 0.2,
                "stop": ["l synth"]}  # fmt: skip
    colour = [{"role": "user", "content": "Name a colour."}]
    done = client.chat.completions.create(model="moa", messages=colour, service_tier="priority",
                                          **sampling)  # fmt: skip
    assert done.choices[0].message.content == "the fina"  # cut before the stop sequence
    agg = upstream.calls("agg")[-1]
    assert {k: agg.get(k) for k in sampling} == sampling and "service_tier" not in agg
    streamed = client.chat.completions.create(model="moa", stream=True, messages=[
        {"role": "user", "content": "Name a colour."}], stop=["l synth"])  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "the fina"
    before = len(upstream.calls("p"))
    vote = {"moa": {"aggregator_mode": "vote"}}
    client.chat.completions.create(model="moa", messages=colour, top_p=0.5, extra_body=vote)
    assert all(b["top_p"] == 0.5 for b in upstream.calls("p")[before:])  # the vote's answer


def test_completions_and_what_is_not_offered(client: openai.OpenAI, url: str) -> None:
    text = client.completions.create(model="moa", prompt="Name a colour.")
    assert text.choices[0].text == ANSWER and text.object == "text_completion"
    pieces = client.completions.create(model="moa", prompt="Name a colour.", stream=True)
    assert "".join(p.choices[0].text for p in pieces) == ANSWER
    missing = httpx.post(f"{url}/embeddings", json={"model": "moa", "input": "x"},
                         headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
    assert missing.status_code == 404
    assert "POST /v1/responses" in missing.json()["error"]["message"]
    assert PROPOSAL  # the upstream's proposals are what the aggregator read
