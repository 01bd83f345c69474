"""`moa-graph serve` over real HTTP, driven by the openai SDK, httpx and ChatOpenAI.

Each server is a `moa-graph serve` subprocess whose models (``openai:p`` proposers, an
``openai:agg`` aggregator) point at a scripted OpenAI-compatible server in this process, so
the tests see every upstream call. The embedded model is served through `langgraph dev` in
test_studio.py.
"""

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from tests.serve_process import ANSWER, KEY, Upstream, start_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def url(upstream: Upstream) -> Iterator[str]:
    yield from start_server(upstream)


@pytest.fixture(scope="module")
def locked_url(upstream: Upstream) -> Iterator[str]:
    yield from start_server(upstream, MOA_API_KEY=KEY, MOA_MAX_CONCURRENT_REQUESTS="1")


@pytest.fixture(autouse=True)
def reset(upstream: Upstream) -> None:
    upstream.proposer_delay_s, upstream.fail_proposers = 0.0, False
    upstream.fail_first_proposer = False


def client(url: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=kwargs.pop("api_key", "none"), **kwargs)


USER = [{"role": "user", "content": "Name a colour."}]
TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def test_models_and_a_completion(url: str, upstream: Upstream) -> None:
    ids = [m.id for m in client(url).models.list()]
    assert {"moa", "moa-paper", "moa-lite", "self-moa", "usc", "vote"} <= set(ids)
    assert client(url).models.retrieve("vote").id == "vote"
    done = client(url).chat.completions.create(model="moa", messages=USER)
    assert done.id.startswith("chatcmpl-") and done.model == "moa"
    assert done.choices[0].message.content == ANSWER
    assert done.choices[0].finish_reason == "stop"
    # usage is every call of the run: 2 proposers + the aggregator, 11 in / 7 out each
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (33, 21)


def test_a_stream_has_one_finish_a_usage_chunk_and_no_proposer_text(url: str) -> None:
    events = []
    with httpx.stream(
        "POST", url + "/chat/completions", timeout=30,
        json={"model": "moa", "messages": USER, "stream": True,
              "stream_options": {"include_usage": True}},
    ) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert deltas == ANSWER and "PROPOSAL" not in deltas
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [f for f in finishes if f] == ["stop"]
    [usage] = [c["usage"] for c in chunks if c.get("usage")]
    assert usage["total_tokens"] == 54 and chunks[-1]["choices"] == []


async def test_chat_openai_invoke_astream_abatch_and_aggregator_settings(
    url: str, upstream: Upstream
) -> None:
    model = ChatOpenAI(base_url=url, api_key="none", model="moa", temperature=0.2, max_tokens=77)
    assert model.invoke("hi").content == ANSWER
    assert "".join([c.content async for c in model.astream("hi")]) == ANSWER
    assert [m.content for m in await model.abatch(["a", "b"])] == [ANSWER, ANSWER]
    agg = upstream.calls("agg")[-1]
    assert agg["temperature"] == 0.2 and agg["max_tokens"] == 77
    assert upstream.calls("p")[-1]["temperature"] == 0.7  # proposers keep their settings


def test_multi_turn_and_developer_role_reach_the_prompt(url: str, upstream: Upstream) -> None:
    messages = [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
        {"role": "assistant", "content": "Rouge."},
        {"role": "user", "content": "Another one?"},
    ]
    client(url).chat.completions.create(model="moa", messages=messages)
    sent = upstream.calls("p")[-1]["messages"]
    assert [m["content"] for m in sent] == ["Answer in French.", "Name a colour.", "Rouge.",
                                            "Another one?"]  # fmt: skip
    assert sent[0]["role"] in ("system", "developer")


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {}}},
            "response_format.json_schema.name",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0].role"),
        ({"tools": [{"type": "function", "function": {"name": "f g"}}]}, "tools[0].function.name"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"logit_bias": {"42": 10}}, "logit_bias"),
        ({"store": True}, "store"),
        ({"extra_body": {"no_such_field": 1}}, "no_such_field"),
        ({"extra_body": {"moa": {"rounds": 0}}}, "moa"),
        ({"extra_body": {"moa": {"no_such_setting": 1}}}, "moa.no_such_setting"),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(url, upstream, kwargs, param) -> None:
    before = len(upstream.server.requests)
    request = {"model": "moa", "messages": USER, **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        client(url).chat.completions.create(**request)
    assert caught.value.body["param"] == param
    assert len(upstream.server.requests) == before  # nothing was called


def test_unknown_model_is_404(url: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(url).chat.completions.create(model="gpt-9", messages=USER)
    assert caught.value.body["code"] == "model_not_found"


def test_serve_says_where_it_listens_and_serves_no_file_of_the_working_directory(
    upstream: Upstream, tmp_path
) -> None:
    log = tmp_path / "serve.log"
    server = start_server(upstream, log=log)  # run from the repository: studio/ is right here
    served = next(server)
    try:
        ids = {m.id for m in client(served).models.list()}
    finally:
        next(server, None)
    first = log.read_text().splitlines()[0]
    assert first.startswith(f"moa-graph serve: {served} (1 worker, open (no MOA_API_KEY))")
    assert "moa-lite" in ids and "vote-local" not in ids  # no saved assistant unless named
    assert all(model in first for model in ids)


def test_a_failed_run_is_500_runs_once_and_its_details_stay_in_the_log(
    upstream: Upstream, tmp_path
) -> None:
    log = tmp_path / "serve.log"
    server = start_server(upstream, log=log)
    served = next(server)
    upstream.fail_proposers = True
    before = len(upstream.calls("p"))
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            client(served).chat.completions.create(model="moa", messages=USER)
    finally:
        next(server, None)
    body, request = caught.value.body, caught.value.response.headers["x-request-id"]
    assert body["code"] == "proposers_failed" and request in body["message"]
    assert "Error code" not in body["message"] and "400" not in body["message"]
    assert len(upstream.calls("p")) == before + 2  # one run of 2 proposers, no client retry
    logged = [line for line in log.read_text().splitlines() if request in line]
    assert logged and "Error code: 400" in logged[0]


def test_a_failure_after_streaming_began_is_an_error_event(url: str, upstream: Upstream) -> None:
    upstream.fail_proposers = True
    with pytest.raises(openai.APIError, match="the MoA run failed"):
        for _ in client(url).chat.completions.create(model="moa", messages=USER, stream=True):
            pass


def test_heartbeats_keep_a_chunk_timeout_client_alive(url: str, upstream: Upstream) -> None:
    upstream.proposer_delay_s = 1.6
    model = ChatOpenAI(base_url=url, api_key="none", model="moa", stream_chunk_timeout=1)
    assert "".join(c.content for c in model.stream("hi")) == ANSWER


def test_client_disconnect_stops_the_run(url: str, upstream: Upstream) -> None:
    upstream.proposer_delay_s = 1.5
    before = len(upstream.calls("agg"))
    body = {"model": "moa", "messages": USER, "stream": True}
    with httpx.stream("POST", url + "/chat/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        next(lines)  # the role chunk, then hang up while the proposers run
    time.sleep(3)
    assert len(upstream.calls("agg")) == before  # no model call after the client had gone


async def test_four_concurrent_streams_take_less_than_twice_one(url, upstream) -> None:
    upstream.proposer_delay_s = 1.0
    model = ChatOpenAI(base_url=url, api_key="none", model="moa")

    async def one() -> float:
        start = time.monotonic()
        assert "".join([c.content async for c in model.astream("hi")]) == ANSWER
        return time.monotonic() - start

    single = await one()
    start = time.monotonic()
    await asyncio.gather(*(one() for _ in range(4)))
    assert time.monotonic() - start < 2 * single


def test_bearer_key_and_request_limit(locked_url: str, upstream: Upstream) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(locked_url).models.list()
    assert caught.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(locked_url, api_key="wrong").models.list()
    assert next(iter(client(locked_url, api_key=KEY).models.list())).id == "moa"

    upstream.proposer_delay_s = 2.0
    slow = threading.Thread(target=lambda: client(locked_url, api_key=KEY).chat.completions.create(
        model="moa", messages=USER))  # fmt: skip
    slow.start()
    time.sleep(0.7)
    with pytest.raises(openai.RateLimitError):
        client(locked_url, api_key=KEY, max_retries=0).chat.completions.create(
            model="moa", messages=USER
        )
    slow.join()


def test_a_panel_that_shrank_is_said_in_a_header_and_a_field(url: str, upstream: Upstream) -> None:
    upstream.fail_first_proposer = True
    body = {"model": "moa", "messages": [{"role": "user", "content": "Name a tree."}]}
    done = httpx.post(f"{url}/chat/completions", json=body, timeout=30)
    assert done.status_code == 200 and done.headers["x-moa-proposals"] == "1/2"
    assert done.json()["moa"] == {"proposals_asked": 2, "proposals_answered": 1, "degraded": True}
    streamed = {**body, "messages": [{"role": "user", "content": "Name a bird."}], "stream": True}
    with httpx.stream("POST", f"{url}/chat/completions", json=streamed, timeout=30) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: {")]  # fmt: skip
    [finishing] = [e for e in events if e.get("choices") and e["choices"][0].get("finish_reason")]
    assert finishing["moa"]["degraded"] is True
    upstream.fail_first_proposer = False
    whole = httpx.post(f"{url}/chat/completions", json={**body, "messages": USER}, timeout=30)
    assert whole.headers["x-moa-proposals"] == "2/2" and not whole.json()["moa"]["degraded"]
