"""The call policy: retries with backoff, admission before the timeout, rate limits."""

import asyncio
import itertools
import time

import pytest
from langchain_core.messages import HumanMessage

from moa_graph import MoAContext, ModelSpec, ProposerQuorumError, build_moa_graph
from moa_graph.calls import CallPolicy, call_model
from moa_graph.limits import Admission, TokenBudget, admission_for, is_retryable
from tests.fakes import ScriptedChatModel
from tests.scripted_openai_server import Fault, ScriptedOpenAIServer

QUESTION = {"messages": [HumanMessage("Name a colour.")]}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


def flaky(*outcomes: "str | Fault"):
    """A script that answers the given outcomes in turn, then 'fine'."""
    it = itertools.chain(outcomes, itertools.repeat("fine"))
    return lambda body: next(it)


async def run_one(server: ScriptedOpenAIServer, **context) -> dict:
    ctx = MoAContext(
        proposers=[ModelSpec(model="openai:p", model_kwargs={"base_url": server.url})],
        aggregator=ModelSpec(model="openai:agg", model_kwargs={"base_url": server.url}),
        **context,
    )
    return await build_moa_graph().compile().ainvoke(QUESTION, context=ctx)


async def test_server_errors_and_rate_limits_are_retried_until_an_answer(env) -> None:
    server = ScriptedOpenAIServer(flaky(Fault(503), Fault(429, retry_after_s=0.2))).start()
    try:
        start = time.monotonic()
        out = await run_one(server, retries=2)
    finally:
        server.stop()
    [record] = out["proposals"]
    assert record["status"] == "ok" and record["content"] == "fine"
    assert server.faults == 2 and len(server.requests) == 4  # 3 proposer attempts + aggregator
    gaps = [b - a for a, b in itertools.pairwise(server.arrivals[:3])]
    assert gaps[1] >= 0.2  # the 429's Retry-After was honoured
    assert time.monotonic() - start < 10


async def test_client_errors_are_not_retried(env) -> None:
    server = ScriptedOpenAIServer(flaky(Fault(400))).start()
    try:
        with pytest.raises(ProposerQuorumError, match="Error code: 400"):
            await run_one(server, retries=3)
    finally:
        server.stop()
    assert server.faults == 1 and len(server.requests) == 1  # no retry, no aggregator call


async def test_a_hung_attempt_times_out_and_the_retry_answers(env) -> None:
    server = ScriptedOpenAIServer(flaky(Fault(hang_s=3))).start()
    try:
        out = await run_one(server, retries=1, proposer_timeout_s=0.5)
    finally:
        server.stop()
    assert out["proposals"][0]["status"] == "ok"
    # The attempt was given up at 0.5 s: waiting for the hang to end (3 s) would take longer.
    assert out["proposals"][0]["latency_s"] < 2.5


def test_retryable_errors() -> None:
    class Status(Exception):
        def __init__(self, code: int):
            self.status_code = code

    assert is_retryable(TimeoutError()) and is_retryable(ConnectionError())
    assert is_retryable(Status(429)) and is_retryable(Status(502))
    assert not is_retryable(Status(400)) and not is_retryable(Status(401))
    assert not is_retryable(ValueError("context length exceeded"))


async def test_waiting_for_a_server_slot_does_not_count_towards_the_timeout() -> None:
    model = ScriptedChatModel(reply="ok", delay_s=0.3)
    policy = CallPolicy(timeout_s=0.5, admission=Admission(server="one-at-a-time"))
    replies = await asyncio.gather(*(call_model(model, [HumanMessage("q")], {}, policy)
                                     for _ in range(3)))  # fmt: skip
    assert [r.text for r in replies] == ["ok"] * 3  # 0.9 s in all, no call timed out
    assert model.concurrency.peak == 1


async def test_request_rate_is_held_across_models_of_a_provider() -> None:
    admission = admission_for("openai:a", rpm={"openai": 600}, tpm={}, server=None, max_tokens=1)
    same = admission_for("openai:b", rpm={"openai": 600}, tpm={}, server=None, max_tokens=1)
    assert admission is not None and same is not None and admission.requests is same.requests
    start = time.monotonic()
    for _ in range(6):
        await admission.aenter(0)
    assert time.monotonic() - start >= 0.45  # 10 per second; the bucket starts empty


def test_token_budget_charges_estimates_and_what_went_over_them() -> None:
    budget = TokenBudget(per_minute=100)
    assert budget.try_reserve(60) == 0
    assert budget.try_reserve(60) > 0  # 40 left of the minute's 100
    assert budget.try_reserve(40) == 0
    budget.settle(20, 30)  # a call used 10 more than its estimate: charged with the next one
    assert 6 < budget.try_reserve(1) < 7  # 11 tokens: 6.6 s of refill at 100 a minute


def test_rate_settings_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    from moa_graph import MoAConfigError

    with pytest.raises(MoAConfigError, match=r"rpm\['openai'\]=0"):
        MoAContext(rpm={"openai": 0})
    with pytest.raises(MoAConfigError, match="retries=-1"):
        MoAContext(retries=-1)
    monkeypatch.setenv("MOA_RPM", "openai=600,local=30")
    assert MoAContext().rpm == {"openai": 600.0, "local": 30.0}
