"""Tools and structured output through `moa-graph serve`, driven by real clients.

The served models point at a scripted upstream (tests/serve_process.py): given tools, each model
calls the forced tool (else the first) with arguments from the question until a tool result
comes back. What is asserted is the OpenAI wire format the clients rely on.
"""

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.serve_process import ANSWER, Upstream, start_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def url(upstream: Upstream) -> Iterator[str]:
    yield from start_server(upstream)


@pytest.fixture(autouse=True)
def fitting(upstream: Upstream) -> None:
    upstream.misfit_calls = False


@tool
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


class Sum(BaseModel):
    a: int
    b: int


def chat(url: str, model: str = "moa") -> ChatOpenAI:
    return ChatOpenAI(base_url=url, api_key="none", model=model, max_retries=0)


def api(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="none", max_retries=0)


def test_an_agent_runs_its_tool_loop_over_the_api(url: str, upstream: Upstream) -> None:
    agent = create_agent(chat(url), tools=[add])
    out = agent.invoke({"messages": [("user", "What is 3 + 4?")]})
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai"]
    assert out["messages"][1].tool_calls[0]["args"] == {"a": 3, "b": 4}
    assert out["messages"][2].content == "7" and out["messages"][-1].content == ANSWER
    # The proposers ran without tools and saw the tool turn as text.
    second = upstream.calls("p")[-1]
    assert "tools" not in second and "[result of tool add]: 7" in json.dumps(second["messages"])


def test_with_structured_output_returns_the_model(url: str, upstream: Upstream) -> None:
    assert chat(url).with_structured_output(Sum).invoke("Sum 3 and 4.") == Sum(a=3, b=4)
    forced = upstream.calls("agg")[-1]
    assert forced["tool_choice"]["function"]["name"] == "Sum"  # the schema as a forced tool


def test_the_sdks_parse_returns_parsed_and_vote_votes_over_the_objects(
    url: str, upstream: Upstream
) -> None:
    before = len(upstream.server.requests)
    done = api(url).chat.completions.parse(
        model="vote", messages=[{"role": "user", "content": "Sum 5 and 6."}], response_format=Sum
    )
    assert done.choices[0].message.parsed == Sum(a=5, b=6)
    assert done.choices[0].finish_reason == "stop"
    assert json.loads(done.choices[0].message.content) == {"a": 5, "b": 6}
    run = upstream.server.requests[before:]
    assert [body["model"] for body in run] == ["p", "p"]  # the vote needs no aggregator call
    assert all(body["tools"][0]["function"]["name"] == "Sum" for body in run)


def test_streamed_tool_calls_reassemble_in_the_sdk(url: str) -> None:
    integers = {"a": {"type": "integer"}, "b": {"type": "integer"}}
    spec = {"type": "function",
            "function": {"name": "add",
                         "parameters": {"type": "object", "properties": integers}}}  # fmt: skip
    with api(url).chat.completions.stream(
        model="moa", messages=[{"role": "user", "content": "Add 8 and 9."}], tools=[spec]
    ) as stream:
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("add", {"a": 8, "b": 9})
    assert final.choices[0].finish_reason == "tool_calls"


def test_parallel_tool_calls_false_returns_one_call(url: str) -> None:
    done = api(url).chat.completions.create(
        model="moa", messages=[{"role": "user", "content": "Add 1 and 2."}],
        tools=[add_spec()], parallel_tool_calls=False,
    )  # fmt: skip
    assert len(done.choices[0].message.tool_calls) == 1


def add_spec() -> dict:
    return {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def test_an_answer_that_does_not_fit_is_never_returned(url: str, upstream: Upstream) -> None:
    upstream.misfit_calls = True
    schema = {"name": "Sum", "schema": Sum.model_json_schema()}
    body = {"model": "moa", "messages": [{"role": "user", "content": "Sum 3 and 4."}],
            "response_format": {"type": "json_schema", "json_schema": schema}}  # fmt: skip
    refused = httpx.post(f"{url}/chat/completions", json=body, timeout=30)
    assert refused.status_code == 500
    error = refused.json()["error"]
    assert error["code"] == "invalid_structured_output" and "does not fit" in error["message"]
    with httpx.stream("POST", f"{url}/chat/completions", json={**body, "stream": True},
                      timeout=30) as streamed:  # fmt: skip
        events = [line[6:] for line in streamed.iter_lines() if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["code"] == "invalid_structured_output"
    finishes = [c["finish_reason"] for e in events[:-1] for c in json.loads(e).get("choices", [])]
    assert "stop" not in finishes and "[DONE]" not in events


def test_json_object_answers_any_object(url: str, upstream: Upstream) -> None:
    done = api(url).chat.completions.create(
        model="moa", messages=[{"role": "user", "content": "Give me JSON."}],
        response_format={"type": "json_object"},
    )  # fmt: skip
    assert isinstance(json.loads(done.choices[0].message.content), dict)
    assert upstream.calls("agg")[-1]["tool_choice"]["function"]["name"] == "json_object"


def test_the_fusion_judges_analysis_comes_back_when_asked(url: str, upstream: Upstream) -> None:
    body = {"model": "fusion-budget", "messages": [{"role": "user", "content": "Name a tree."}]}
    asked = httpx.post(f"{url}/chat/completions", json={**body, "include_analysis": True},
                       timeout=30).json()  # fmt: skip
    assert asked["choices"][0]["message"]["content"] == ANSWER
    assert set(asked["moa"]["analysis"]) >= {"consensus", "blind_spots", "assessments"}
    judge = [b for b in upstream.calls("agg") if b.get("tools")][-1]
    assert judge["temperature"] == 0.0 and judge["tools"][0]["function"]["name"] == "analysis"
    plain = httpx.post(f"{url}/chat/completions", json=body, timeout=30).json()
    assert "analysis" not in plain["moa"]
