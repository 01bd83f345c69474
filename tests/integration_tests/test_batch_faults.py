"""Batch generation under faults and rate limits, timed by the wall clock.

A scripted OpenAI-compatible server fails, hangs and rate-limits calls; these tests measure
retries, timeouts and request rates in real time, so they are integration tests.
"""

import time
from collections.abc import Iterator

import pytest

from moa_graph import MoAContext, ModelSpec
from moa_graph.batch import abatch_generate
from tests.scripted_openai_server import ScriptedOpenAIServer, faulty

pytestmark = pytest.mark.integration


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    yield


def context_for(server: ScriptedOpenAIServer, **settings) -> MoAContext:
    spec = {"model": "openai:m", "model_kwargs": {"base_url": server.url}}
    return MoAContext(
        proposers=[ModelSpec(**spec, n=3)],
        aggregator=ModelSpec(model="openai:agg", model_kwargs={"base_url": server.url}),
        **settings,
    )


async def test_faults_are_retried_and_every_failed_row_keeps_its_error(key) -> None:
    server = ScriptedOpenAIServer(
        faulty(server_errors=0.10, rate_limits=0.05, hangs=0.02, hang_s=5.0)
    ).start()
    try:
        start = time.monotonic()
        context = context_for(server, retries=3, proposer_timeout_s=2.5)
        rows = [f"Question {i}?" for i in range(150)]
        records = [r async for r in abatch_generate(rows, context=context, concurrency=64)]
        wall = time.monotonic() - start
    finally:
        server.stop()
    assert sorted(r["row"] for r in records) == list(range(150))
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) >= 0.99 * 150, [r["error"] for r in records if r["status"] != "ok"]
    for record in records:
        if record["status"] != "ok":
            assert record["error"]["type"] and record["error"]["message"]
    assert server.faults > 75  # the script did fail about 17% of attempts
    prompts = [m["content"] for body in server.requests for m in body["messages"]]
    assert not any("None" in text for text in prompts)
    assert wall < 120  # no run hung


async def test_request_rate_stays_within_the_limit(key) -> None:
    server = ScriptedOpenAIServer(lambda body: "ok", rpm=600).start()
    try:
        context = context_for(server, rpm={"openai": 600})
        rows = [f"q{i}" for i in range(15)]  # 60 calls at 10 per second
        records = [r async for r in abatch_generate(rows, context=context, concurrency=16)]
    finally:
        server.stop()
    assert all(r["status"] == "ok" for r in records)
    assert server.faults == 0  # no 429 from the server
    arrivals = server.arrivals
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert abs(rate - 10.0) <= 0.5, rate  # within 5% of 600 per minute
