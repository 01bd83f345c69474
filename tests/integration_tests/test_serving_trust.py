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


BACKREFERENCE = {"type": "object", "properties": {"s": {"type": "string", "pattern": r"(a)\1"}}}
CHAIN_18 = {
    "type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}},
    "$defs": {f"d{k}": {"allOf": [{"$ref": f"#/$defs/d{k + 1}"}] * 2} for k in range(18)}
    | {"d18": {"type": "string"}},
}  # fmt: skip
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
        (json_schema(BACKREFERENCE), 400,
         "response_format.json_schema.schema.properties.s.pattern", "RE2"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": BACKREFERENCE}}]},
         400, "tools[0].function.parameters.properties.s.pattern", "RE2"),
        (json_schema({"$ref": "http://169.254.169.254/latest"}), 400,
         "response_format.json_schema.schema.$ref", "only to itself"),
        (json_schema({"$dynamicRef": "http://127.0.0.1:9/x"}), 400,
         "response_format.json_schema.schema.$dynamicRef", "dynamic reference"),
        (json_schema({"$ref": "#/x-data", "x-data": {"$ref": "file:///etc/hostname"}}), 400,
         "response_format.json_schema.schema.x-data.$ref", "only to itself"),
        (json_schema({"type": "object", "enum": [{"$ref": "http://127.0.0.1:9/x"}]}), 400,
         "response_format.json_schema.schema.enum.0.$ref", "only to itself"),
        (json_schema({"type": "object", "if": {"$ref": "#"}}), 400,
         "response_format.json_schema.schema.if.$ref", "refers back to itself"),
        (json_schema(CHAIN_18), 400, "response_format.json_schema.schema.properties.x",
         "expands to more than 10000"),
        ({"tools": [{"type": "function", "function": {"name": f"f{i}", "parameters": {
            "type": "object", "description": "x" * 60_000}}} for i in range(5)]}, 400, "tools",
         "MOA_SERVE_MAX_REQUEST_SCHEMA_BYTES"),
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
        bare = httpx.get(f"{served}/models", headers={"Authorization": KEY}, timeout=10)
        assert bare.status_code == 401  # the key without "Bearer " is not a key
    finally:
        next(server, None)


def test_a_recursive_model_with_a_pattern_still_answers_as_json(url, upstream) -> None:
    from pydantic import BaseModel, Field

    class Node(BaseModel):
        name: str
        children: list["Node"] = []

    class Tree(BaseModel):
        title: str = Field(pattern=r"^[A-Za-z .]+$")  # refused before RE2 matched patterns
        nodes: list[Node]

    response = ask(url, **json_schema(Tree.model_json_schema()))
    assert response.status_code == 200, response.text
    tree = Tree.model_validate_json(response.json()["choices"][0]["message"]["content"])
    assert tree.title == "Name a colour."


WORST = {
    "type": "object",
    "properties": {f"k{i}": {"$ref": "#/$defs/d0"} for i in range(1500)},
    "$defs": {f"d{k}": {"allOf": [{"$ref": f"#/$defs/d{k + 1}"}] * 2} for k in range(11)}
    | {"d11": {"type": "string"}},
}
"""Accepted (8,189 schemas at one place, under 64 KiB), but 1,500 such places in one answer."""


def test_the_costliest_accepted_schema_is_stopped_and_holds_nobody_up(url, upstream) -> None:
    with ThreadPoolExecutor(2) as pool:
        costly = pool.submit(ask, url, **json_schema(WORST))
        models = [
            httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
            for _ in range(3)
        ]
        response = costly.result()
    assert all(m.status_code == 200 for m in models)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "schema_too_costly"


def test_slow_clients_are_cut_off_and_honest_ones_answered(upstream) -> None:
    import socket
    import time
    from urllib.parse import urlparse

    server = start_server(upstream, MOA_SERVE_HEADER_TIMEOUT_S="1", MOA_SERVE_BODY_TIMEOUT_S="1",
                          MOA_SERVE_MAX_CONNECTIONS="40")  # fmt: skip
    served = next(server)
    address = (urlparse(served).hostname, urlparse(served).port)
    try:
        slow_body = socket.create_connection(address)
        slow_body.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        slow_heads = [socket.create_connection(address) for _ in range(60)]
        for s in slow_heads:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # never finished
        honest = [httpx.get(f"{served}/models", timeout=10).status_code for _ in range(5)]
        assert set(honest) <= {200, 503}, honest  # never a reset (httpx would raise)
        time.sleep(2.5)
        answers = []
        for s in [*slow_heads, slow_body]:
            s.settimeout(5)
            answers.append(s.recv(200).split(b"\r\n")[0])
            s.close()
        assert set(answers) <= {b"HTTP/1.1 408 Request Timeout",
                                b"HTTP/1.1 503 Service Unavailable"}  # fmt: skip
        assert answers[-1] == b"HTTP/1.1 408 Request Timeout"  # the body came too slowly
        assert b"HTTP/1.1 408 Request Timeout" in answers[:60]
        assert httpx.get(f"{served}/models", timeout=10).status_code == 200
    finally:
        next(server, None)


def test_a_part_that_is_not_an_object_is_a_400_naming_it(url, upstream) -> None:
    response = ask(url, messages=[{"role": "user", "content": ["just text"]}])
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].content"
