"""`moa-graph serve` measured as a hostile client would: keys, endpoints, budgets, workers.

A listener stands in for the attacker's server: it must receive nothing, while the server's
provider key (`UPSTREAM_KEY`) is set for the served models' upstream.
"""

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.serve_process import (
    ANSWER,
    KEY,
    UPSTREAM_KEY,
    Upstream,
    child_commands,
    start_server,
)

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def url(upstream: Upstream) -> Iterator[str]:
    yield from start_server(upstream)


@pytest.fixture(scope="module")
def open_models_url(upstream: Upstream) -> Iterator[str]:
    yield from start_server(upstream, MOA_SERVE_ALLOW_MODELS="openai:*")


def ask(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/chat/completions", json={"model": "moa", "messages": USER, **body},
                      timeout=30)  # fmt: skip


def exfiltration_attempts(attacker: str) -> list[tuple[dict, str]]:
    """The `moa` objects of the issue's attack, and the param each refusal must name."""
    moved = {"model": "openai:x", "model_kwargs": {"base_url": attacker}}
    return [
        ({"aggregator": moved}, "moa.aggregator"),
        ({"proposers": [{"model": "openai:p", "model_kwargs": {"openai_api_base": attacker}}]},
         "moa.proposers"),
        ({"layer_proposers": [[moved]]}, "moa.layer_proposers"),
    ]  # fmt: skip


def test_a_request_cannot_send_the_servers_key_to_its_own_url(url, upstream, attacker) -> None:
    before = len(upstream.server.requests)
    for moa, param in exfiltration_attempts(attacker.url):
        for stream in (False, True):
            response = ask(url, moa=moa, stream=stream)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["param"] == param and "MOA_SERVE_ALLOW_MODELS" in error["message"]
    assert attacker.received == []
    assert len(upstream.server.requests) == before


def test_allowed_models_still_cannot_move_endpoints_or_headers(
    open_models_url, upstream, attacker
) -> None:
    before = len(upstream.server.requests)
    attempts = [{"base_url": attacker.url}, {"openai_api_base": attacker.url},
                {"default_headers": {"x-leak": "1"}}, {"openai_proxy": attacker.url}]  # fmt: skip
    for kwargs in attempts:
        spec = {"model": "openai:agg", "model_kwargs": kwargs}
        response = ask(open_models_url, moa={"aggregator": spec})
        assert response.status_code == 400
        assert (
            response.json()["error"]["param"] == f"moa.aggregator.model_kwargs.{next(iter(kwargs))}"
        )
    refused = ask(open_models_url, moa={"aggregator": "local:/etc/hostname.gguf"})
    assert refused.json()["error"]["param"] == "moa.aggregator.model"
    many = ask(open_models_url, moa={"proposers": ["openai:p n=30"]})  # 31 calls
    assert many.status_code == 400 and "MOA_SERVE_MAX_CALLS" in many.json()["error"]["message"]
    assert attacker.received == [] and len(upstream.server.requests) == before
    # A sampling setting on an allowed model is fine and reaches the upstream.
    done = ask(open_models_url, moa={"aggregator": "openai:agg top_p=0.5", "max_tokens": 16})
    assert done.status_code == 200 and done.json()["choices"][0]["message"]["content"] == ANSWER
    assert upstream.calls("agg")[-1]["top_p"] == 0.5
    assert UPSTREAM_KEY not in done.text


def json_schema(schema: dict) -> dict:
    return {
        "response_format": {"type": "json_schema", "json_schema": {"name": "A", "schema": schema}}
    }


REGEX = {"type": "object", "properties": {"s": {"type": "string", "pattern": "(a+)+$"}}}
DEEP: dict = {"type": "string"}
for _ in range(16):
    DEEP = {"type": "array", "items": DEEP}


@pytest.mark.parametrize(
    ("body", "status", "param", "setting"),
    [
        ({"moa": {"rounds": 10_000}}, 400, "moa.rounds", "MOA_SERVE_MAX_ROUNDS"),
        ({"max_tokens": 100_000}, 400, "max_tokens", "MOA_SERVE_MAX_TOKENS"),
        ({"moa": {"max_tokens": 100_000}}, 400, "moa.max_tokens", "MOA_SERVE_MAX_TOKENS"),
        ({"moa": {"proposer_timeout_s": 86_400}}, 400, "moa.proposer_timeout_s",
         "MOA_SERVE_MAX_TIMEOUT_S"),
        ({"messages": USER * 300}, 400, "messages", "MOA_SERVE_MAX_MESSAGES"),
        (json_schema(DEEP), 400, "response_format.json_schema.schema" + ".items" * 16,
         "MOA_SERVE_MAX_SCHEMA_DEPTH"),
        (json_schema({"type": "object", "description": "x" * 70_000}), 400,
         "response_format.json_schema.schema", "MOA_SERVE_MAX_SCHEMA_BYTES"),
        (json_schema(REGEX), 400, "response_format.json_schema.schema.properties.s.pattern",
         "backtrack"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": REGEX}}]}, 400,
         "tools[0].function.parameters.properties.s.pattern", "backtrack"),
        (json_schema({"$ref": "http://169.254.169.254/latest"}), 400,
         "response_format.json_schema.schema.$ref", "only to itself"),
        ({"moa": {"retries": 100}}, 400, "moa.retries", "MOA_SERVE_ALLOW_FIELDS=retries"),
        ({"moa": {"rpm": {"openai": 1e9}}}, 400, "moa.rpm", "MOA_SERVE_ALLOW_FIELDS=rpm"),
        ({"moa": {"answer_pattern": "(a+)+$"}}, 400, "moa.answer_pattern",
         "MOA_SERVE_ALLOW_FIELDS=answer_pattern"),
        ({"moa": {"review": True}}, 400, "moa.review", "MOA_SERVE_ALLOW_FIELDS=review"),
        ({"messages": [{"role": "user", "content": "x" * 3_000_000}]}, 413, None,
         "MOA_SERVE_MAX_BODY_BYTES"),
    ],
)  # fmt: skip
def test_every_budget_is_refused_before_any_call(url, upstream, body, status, param, setting):
    before = len(upstream.server.requests)
    response = ask(url, **body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and setting in error["message"]
    assert len(upstream.server.requests) == before


def test_a_chunked_body_over_the_limit_is_413(url, upstream) -> None:
    body = json.dumps({"model": "moa", "messages": [{"role": "user", "content": "x" * 3_000_000}]})
    chunks = (body[i : i + 65536].encode() for i in range(0, len(body), 65536))
    response = httpx.post(f"{url}/chat/completions", content=chunks, timeout=30,
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_the_operators_budget_applies_to_its_own_models_and_is_reported(upstream) -> None:
    # 2 proposers, rounds 2 for 'moa-paper': 5 calls; a budget of 4 refuses it.
    server = start_server(upstream, MOA_SERVE_MAX_CALLS="4")
    served = next(server)
    try:
        response = ask(served, model="moa-paper")
        assert response.status_code == 400 and "MOA_SERVE_MAX_CALLS" in response.text
        assert ask(served).status_code == 200  # 'moa' (2 proposers + 1) fits
    finally:
        next(server, None)


def test_two_workers_answer_with_the_key_in_each(upstream: Upstream) -> None:
    pids: list[int] = []
    server = start_server(upstream, "--workers", "2", started=pids, MOA_API_KEY=KEY)
    served = next(server)
    try:
        workers = [c for c in child_commands(pids[0]) if "multiprocessing.spawn" in c]
        assert len(workers) == 2, child_commands(pids[0])
        api = openai.OpenAI(base_url=served, api_key=KEY, max_retries=0)
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda _: api.chat.completions.create(model="moa", messages=USER),
                         range(16))
            )  # fmt: skip
        assert all(a.choices[0].message.content == ANSWER for a in answers)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=served, api_key="wrong", max_retries=0).models.list()
    finally:
        next(server, None)
