"""The operator's policy for settings from a network, the graph's context guard, max_calls."""

import pytest

from moa_graph import MoAConfigError, MoAContext, ModelSpec, build_moa_graph
from moa_graph.budget import most_calls
from moa_graph.trust import RequestPolicy, RequestRefused, guard_from_environment
from tests.fakes import ScriptedChatModel

ATTACKER = "http://127.0.0.1:9/v1"


def refused(call, *args) -> RequestRefused:
    with pytest.raises(RequestRefused) as caught:
        call(*args)
    return caught.value


def test_default_allowlist_takes_run_shaping_fields() -> None:
    RequestPolicy().check_request(
        {"rounds": 2, "aggregator_mode": "vote", "first_k": 2, "seed": 3, "max_tokens": 64,
         "temperature": 0.2, "aggregator_prompt": "p", "shuffle_references": True}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("retries", 50, "retry budget"),
        ("rpm", {"openai": 1e9}, "rate limits"),
        ("tpm", {"openai": 10**9}, "rate limits"),
        ("review", True, "no thread"),
        ("answer_pattern", "(a+)+$", "backtrack"),
    ],
)
def test_operator_fields_are_refused_naming_the_setting_that_allows_them(field, value, why):
    error = refused(RequestPolicy().check_request, {field: value})
    assert error.param == f"moa.{field}" and error.status == 400
    assert why in str(error) and f"MOA_SERVE_ALLOW_FIELDS={field}" in str(error)
    allowed = RequestPolicy(allow_fields=RequestPolicy().allow_fields | {field})
    allowed.check_request({field: value})


def test_unknown_fields_are_refused() -> None:
    assert refused(RequestPolicy().check_request, {"no_such": 1}).param == "moa.no_such"


@pytest.mark.parametrize("field", ["proposers", "layer_proposers", "aggregator"])
def test_model_fields_are_refused_unless_the_operator_allows_models(field) -> None:
    value = [["openai:gpt-4o"]] if field == "layer_proposers" else ["openai:gpt-4o"]
    error = refused(RequestPolicy().check_request, {field: value[0] if field == "aggregator"
                                                    else value})  # fmt: skip
    assert error.param == f"moa.{field}" and "MOA_SERVE_ALLOW_MODELS" in str(error)


@pytest.mark.parametrize(
    "kwargs",
    [{"base_url": ATTACKER}, {"openai_api_base": ATTACKER}, {"default_headers": {"x": "y"}},
     {"http_client": "x"}, {"endpoint_url": ATTACKER}, {"region_name": "us-east-1"}],
)  # fmt: skip
def test_allowed_models_still_refuse_endpoint_changing_kwargs(kwargs) -> None:
    policy = RequestPolicy(allow_models=("openai:*",))
    spec = {"model": "openai:x", "model_kwargs": kwargs}
    error = refused(policy.check_request, {"aggregator": spec})
    assert error.param == f"moa.aggregator.model_kwargs.{next(iter(kwargs))}"
    error = refused(policy.check_request, {"proposers": ["openai:x", spec]})
    assert error.param.startswith("moa.proposers[1].model_kwargs.")


def test_allowed_models_take_sampling_kwargs_and_match_spec_or_provider() -> None:
    policy = RequestPolicy(allow_models=("openai:*", "bedrock_converse:m1"))
    policy.check_request(
        {"proposers": ["openai:a top_p=0.9", {"model": "bedrock_converse:m1", "n": 2}],
         "aggregator": {"model": "openai:b", "model_kwargs": {"stop": ["x"]}}}
    )  # fmt: skip
    for model in ("bedrock_converse:m2", "local:/etc/passwd.gguf", "anthropic:claude"):
        error = refused(policy.check_request, {"aggregator": model})
        assert error.param == "moa.aggregator.model" and model in str(error)


def test_budgets_refuse_rounds_calls_tokens_and_timeouts() -> None:
    policy = RequestPolicy()
    assert "MOA_SERVE_MAX_ROUNDS" in str(refused(policy.check_budget, MoAContext(rounds=10_000)))
    many = MoAContext(proposers=[ModelSpec(model="local:smollm2", n=24)])
    error = refused(policy.check_budget, many)
    assert "25 model calls" in str(error) and "MOA_SERVE_MAX_CALLS" in str(error)
    assert refused(policy.check_budget, MoAContext(max_tokens=10**6)).param == "moa.max_tokens"
    spec = ModelSpec(model="local:smollm2", max_tokens=10**6)
    assert (
        refused(policy.check_budget, MoAContext(aggregator=spec)).param
        == "moa.aggregator.max_tokens"
    )
    assert "MOA_SERVE_MAX_TIMEOUT_S" in str(
        refused(policy.check_budget, MoAContext(proposer_timeout_s=86_400))
    )
    bounded = policy.check_budget(MoAContext(rounds=3))
    assert bounded.max_calls == 24
    assert policy.check_budget(MoAContext(max_calls=5)).max_calls == 5
    assert refused(policy.check_messages, 257).param == "messages"


def test_most_calls_counts_the_aggregators_worst_case() -> None:
    assert most_calls("synthesize", 3, [3, 3]) == 7
    assert most_calls("select", 3, [3]) == 5  # a failed selection falls back to synthesis
    assert most_calls("vote", 3, [9]) == 10  # a vote without answers falls back too
    assert most_calls("sequential", 3, [7]) == 10


def test_policy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_SERVE_ALLOW_FIELDS", "answer_pattern, retries")
    monkeypatch.setenv("MOA_SERVE_ALLOW_MODELS", "openai:*,openai:gpt-4o")
    monkeypatch.setenv("MOA_SERVE_MAX_CALLS", "8")
    policy = RequestPolicy.from_environment()
    assert {"answer_pattern", "retries"} <= policy.allow_fields and policy.max_calls == 8
    assert policy.allow_models == ("openai:*", "openai:gpt-4o")
    monkeypatch.setenv("MOA_SERVE_MAX_CALLS", "-1")
    with pytest.raises(MoAConfigError, match="MOA_SERVE_MAX_CALLS"):
        RequestPolicy.from_environment()
    monkeypatch.setenv("MOA_SERVE_MAX_CALLS", "8")
    monkeypatch.setenv("MOA_SERVE_ALLOW_FIELDS", "proposers")
    with pytest.raises(MoAConfigError, match="MOA_SERVE_ALLOW_MODELS"):
        RequestPolicy.from_environment()


def test_guard_is_off_unless_the_operator_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    assert guard_from_environment() is None
    monkeypatch.setenv("MOA_SERVE_GUARD_CONTEXT", "true")
    assert guard_from_environment() == RequestPolicy()
    monkeypatch.setenv("MOA_SERVE_GUARD_CONTEXT", "maybe")
    with pytest.raises(MoAConfigError, match="MOA_SERVE_GUARD_CONTEXT"):
        guard_from_environment()


def test_context_guard_compares_with_the_operators_settings(monkeypatch) -> None:
    monkeypatch.setenv("MOA_PROPOSERS", '[{"model": "openai:p", "model_kwargs": '
                       '{"base_url": "http://upstream/v1"}}]')  # fmt: skip
    monkeypatch.setenv("MOA_AGGREGATOR", "openai:agg")
    operator, policy = MoAContext(), RequestPolicy()
    policy.check_context(MoAContext(rounds=2, max_tokens=64), operator)
    # The operator's own endpoint, on the operator's model, is fine; another is not.
    policy.check_context(MoAContext(proposers=[*operator.proposers, *operator.proposers]), operator)
    moved = {"model": "openai:p", "model_kwargs": {"base_url": ATTACKER}}
    error = refused(policy.check_context, MoAContext(proposers=[moved]), operator)
    assert error.param == "context.proposers[0].model_kwargs.base_url"
    error = refused(policy.check_context, MoAContext(aggregator="openai:other"), operator)
    assert error.param == "context.aggregator.model"
    error = refused(policy.check_context, MoAContext(answer_pattern="(a+)+$"), operator)
    assert error.param == "context.answer_pattern"
    assert refused(policy.check_context, MoAContext(rounds=50), operator).param == "context.rounds"


async def test_guarded_graph_refuses_before_any_model_is_created(monkeypatch) -> None:
    monkeypatch.setenv("MOA_PROPOSERS", "openai:p")
    monkeypatch.setenv("MOA_AGGREGATOR", "openai:agg")
    graph = build_moa_graph(context_guard=RequestPolicy()).compile()
    attack = {"aggregator": {"model": "openai:agg", "model_kwargs": {"base_url": ATTACKER}}}
    # No OPENAI_API_KEY: creating any openai model would fail with another error.
    with pytest.raises(RequestRefused, match="sampling keys") as caught:
        await graph.ainvoke({"messages": [("user", "hi")]}, context=attack)
    assert caught.value.param == "context.aggregator.model_kwargs.base_url"


async def test_max_calls_is_enforced_by_the_graph_for_every_caller() -> None:
    proposers = [ScriptedChatModel(reply="p") for _ in range(3)]
    aggregator = ScriptedChatModel(reply="answer")
    graph = build_moa_graph(proposers=proposers, aggregator=aggregator).compile()
    inputs = {"messages": [("user", "hi")]}
    with pytest.raises(MoAConfigError, match=r"may make 7 model calls .* but max_calls is 6"):
        await graph.ainvoke(inputs, context=MoAContext(rounds=2, max_calls=6))
    assert not any(m.calls for m in [*proposers, aggregator])
    out = await graph.ainvoke(inputs, context=MoAContext(rounds=2, max_calls=7))
    assert out["messages"][-1].text == "answer"


def test_every_setting_is_classified_so_a_new_one_is_a_decision() -> None:
    import dataclasses

    from moa_graph.trust import MODEL_FIELDS, SAFE_FIELDS, WHY_REFUSED

    fields = {f.name for f in dataclasses.fields(MoAContext)}
    assert fields == SAFE_FIELDS | set(MODEL_FIELDS) | set(WHY_REFUSED)


async def test_router_agent_guard_covers_its_single_model() -> None:
    from graphs.router_agent import build_router_agent

    agent = build_router_agent(context_guard=RequestPolicy()).compile()
    with pytest.raises(RequestRefused) as caught:
        await agent.ainvoke({"messages": [("user", "Hi")]},
                            context={"single_model": "openai:elsewhere"})  # fmt: skip
    assert caught.value.param == "context.single_model"
