"""How a chat completion request becomes MoA settings: budgets and rate limits."""

import pytest

from moa_graph.serving.catalog import ServedModel, report_oversized, served_models
from moa_graph.serving.errors import APIError
from moa_graph.serving.requests import ChatRequest, prepare
from moa_graph.trust import RequestPolicy

USER = [{"role": "user", "content": "hi"}]


def test_rate_limits_are_the_operators_whole_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_RPM", "openai=600")
    monkeypatch.setenv("MOA_TPM", "openai=90001")
    body = ChatRequest(model="moa", messages=USER)
    _, context, _ = prepare(body, ServedModel("moa", ""), RequestPolicy())
    # Not divided among workers: they share one limiter (moa_graph.limit_store).
    assert (context.rpm, context.tpm) == ({"openai": 600.0}, {"openai": 90001})
    assert context.max_calls == RequestPolicy().max_calls  # the graph enforces the budget too


def test_top_level_max_tokens_over_the_budget_names_its_parameter() -> None:
    body = ChatRequest(model="moa", messages=USER, max_completion_tokens=10_000)
    with pytest.raises(APIError) as caught:
        prepare(body, ServedModel("moa", ""), RequestPolicy(max_tokens=4096))
    assert caught.value.param == "max_completion_tokens" and caught.value.status == 400


def test_served_models_over_the_budget_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    warnings = report_oversized(served_models(), RequestPolicy(max_calls=4))
    # 3 samples + 1 for 'moa', 'moa-lite', 'vote', 'usc' (3 + 2); 'moa-paper' is 7; Self-MoA 7;
    # the fusion judge makes 2 calls: 3 + 2 for 'fusion-budget', 3 + 3 + 2 for 'fusion-quality'.
    assert {w.split("'")[1] for w in warnings} == {
        "moa-paper", "self-moa", "self-moa-seq", "usc", "fusion-budget", "fusion-quality",
    }  # fmt: skip
    assert "MOA_SERVE_MAX_CALLS" in caplog.text
