"""ModelSpec and presets; what spec-built models send, checked at a scripted HTTP server."""

import json
from collections.abc import Iterator

import pytest
from langchain_core.messages import HumanMessage

from moa_graph import MoAConfigError, MoAContext, ModelSpec, build_moa_graph
from moa_graph.layers import call_seed
from moa_graph.presets import PRESETS, SELF_MOA_SAMPLES
from moa_graph.spec import to_model_spec
from tests.scripted_openai_server import ScriptedOpenAIServer

QUESTION = {"messages": [HumanMessage("Name a colour.")]}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("openai:gpt-4o", ModelSpec(model="openai:gpt-4o")),
        (
            "local:smollm2 n=3 temperature=1.0 top_p=0.9 label=hot",
            ModelSpec(
                model="local:smollm2",
                n=3,
                temperature=1.0,
                label="hot",
                model_kwargs={"top_p": 0.9},
            ),
        ),
        ({"model": "openai:x", "max_tokens": 64}, ModelSpec(model="openai:x", max_tokens=64)),
        (ModelSpec(model="openai:x", n=2), ModelSpec(model="openai:x", n=2)),
    ],
)
def test_specs_come_as_text_compact_text_dicts_or_objects(given, expected) -> None:
    assert to_model_spec("proposers[0]", given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"model": "openai:x", "temp": 1}, r"proposers\[0\] has unknown keys \['temp'\]"),
        ({"n": 2}, r"proposers\[0\] needs a 'model' key"),
        ({"model": "openai:x", "n": 0}, r"proposers\[0\].n=0: must be a whole number >= 1"),
        ({"model": "openai:x", "temperature": 5}, r"proposers\[0\].temperature=5"),
        ({"model": "openai:x", "model_kwargs": {"api_key": "sk-1"}}, "never put credentials"),
        ({"model": "openai:x", "model_kwargs": {"seed": 1}}, "seeds come from MoAContext.seed"),
        ("local:smollm2 n", "give settings as key=value words"),
        (42, r"proposers\[0\]=42: give model text"),
    ],
)
def test_bad_specs_name_the_field_and_the_fix(given, message) -> None:
    with pytest.raises(MoAConfigError, match=message):
        MoAContext(proposers=[given])


def test_dict_specs_become_model_specs_and_text_stays_text() -> None:
    ctx = MoAContext(
        proposers=["openai:a", {"model": "openai:b", "n": 2}],
        aggregator={"model": "openai:c", "system_prompt": "Be brief."},
    )
    assert ctx.proposers == ["openai:a", ModelSpec(model="openai:b", n=2)]
    assert ctx.aggregator == ModelSpec(model="openai:c", system_prompt="Be brief.")


def test_aggregator_with_samples_is_refused() -> None:
    with pytest.raises(MoAConfigError, match=r"aggregator.n=2: .* n must be 1"):
        MoAContext(aggregator=ModelSpec(model="openai:x", n=2))


async def test_layer_sizes_count_samples_and_are_checked_before_any_call(server) -> None:
    spec = ModelSpec(model="openai:x", n=3)
    graph = build_moa_graph().compile()
    with pytest.raises(MoAConfigError, match="min_proposals is 4 but a layer has only 3"):
        await graph.ainvoke(QUESTION, context=MoAContext(proposers=[spec], min_proposals=4))
    with pytest.raises(MoAConfigError, match=r"first_k=4: must be between .* size \(3\)"):
        await graph.ainvoke(QUESTION, context=MoAContext(proposers=[spec], first_k=4))


def test_environment_takes_json_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_PROPOSERS", json.dumps([{"model": "openai:a", "n": 4}, "local:b"]))
    monkeypatch.setenv("MOA_AGGREGATOR", '{"model": "openai:c", "temperature": 0}')
    monkeypatch.setenv("MOA_REVIEW", "true")
    monkeypatch.setenv("MOA_FIRST_K", "3")
    ctx = MoAContext()
    assert ctx.proposers == [ModelSpec(model="openai:a", n=4), "local:b"]
    assert ctx.aggregator == ModelSpec(model="openai:c", temperature=0)
    assert ctx.review is True and ctx.first_k == 3


def test_bad_json_in_the_environment_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("MOA_PROPOSERS", "[{oops")
    with pytest.raises(MoAConfigError, match="MOA_PROPOSERS is not valid JSON"):
        MoAContext()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("aggregator_mode", "best", "aggregator_mode='best': choose one of synthesize"),
        ("reference_format", "xml", "reference_format='xml'"),
        ("answer_pattern", r"\d+", "needs a group around the answer"),
        ("answer_pattern", "(", "is not a regular expression"),
        ("window_size", 0, "window_size=0"),
        ("straggler_grace_s", -1, "straggler_grace_s=-1"),
        ("seed", -1, "seed=-1"),
        ("review", "yes", "review='yes': must be true or false"),
        ("proposer_prompt", "  ", "proposer_prompt must be non-empty"),
    ],
)
def test_new_fields_are_validated(field: str, value: object, message: str) -> None:
    with pytest.raises(MoAConfigError, match=message):
        MoAContext(**{field: value})


def test_self_moa_samples_the_operators_proposer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_PROPOSERS", "openai:p,openai:q")
    [sampled] = MoAContext.preset("self-moa").proposers
    assert sampled == ModelSpec(model="openai:p", n=SELF_MOA_SAMPLES)


def test_presets_set_the_shape_and_the_caller_names_the_models() -> None:
    assert MoAContext.preset("moa").rounds == 2
    assert MoAContext.preset("moa-lite", proposers=["openai:a", "openai:b"]).rounds == 1
    self_moa = MoAContext.preset("self-moa", proposers=["openai:best"])
    assert self_moa.proposers == [ModelSpec(model="openai:best", n=SELF_MOA_SAMPLES)]
    assert MoAContext.preset("self-moa").proposers[0].model == "local:smollm2"
    assert MoAContext.preset("self-moa-seq").aggregator_mode == "sequential"
    assert MoAContext.preset("usc").aggregator_mode == "select"
    assert MoAContext.preset("vote", rounds=2).rounds == 2  # overrides win
    quality = MoAContext.preset("fusion-quality")
    assert (quality.rounds, quality.aggregator_mode, quality.judge_criteria) == (
        2, "analyze", "correctness first, then completeness",
    )  # fmt: skip
    assert MoAContext.preset("fusion-budget").max_tokens == 256
    assert set(PRESETS) == {
        "moa", "moa-lite", "self-moa", "self-moa-seq", "usc", "vote", "fusion-quality",
        "fusion-budget",
    }  # fmt: skip


def test_bad_presets_are_refused() -> None:
    with pytest.raises(MoAConfigError, match="preset='best' is unknown"):
        MoAContext.preset("best")
    with pytest.raises(MoAConfigError, match="samples one model"):
        MoAContext.preset("self-moa", proposers=["openai:a", "openai:b"])


def test_seeds_are_a_fixed_function_of_the_run_seed() -> None:
    assert call_seed(7, 1, 0, 2) == call_seed(7, 1, 0, 2)
    assert len({call_seed(7, 1, 0, s) for s in range(50)}) == 50
    assert call_seed(7, 1, 0, 0) != call_seed(8, 1, 0, 0)
    assert all(0 <= call_seed(None, 1, 0, 0) < 2**31 for _ in range(20))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedOpenAIServer]:
    scripted = ScriptedOpenAIServer().start()
    monkeypatch.setenv("OPENAI_BASE_URL", scripted.url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    yield scripted
    scripted.stop()


def proposer_bodies(server: ScriptedOpenAIServer) -> list[dict]:
    return [b for b in server.requests if b["model"] != "agg"]


async def test_per_spec_settings_reach_the_request_body(server: ScriptedOpenAIServer) -> None:
    ctx = MoAContext(
        proposers=[
            ModelSpec(model="openai:hot", temperature=1.3, max_tokens=40,
                      system_prompt="You are a poet.", model_kwargs={"top_p": 0.5}),
            "openai:plain",
        ],
        aggregator=ModelSpec(model="openai:agg", temperature=0.0, system_prompt="Be brief."),
        temperature=0.4,
        max_tokens=99,
    )  # fmt: skip
    out = await build_moa_graph().compile().ainvoke(QUESTION, context=ctx)

    hot, plain = sorted(proposer_bodies(server), key=lambda b: b["model"])
    assert (hot["temperature"], hot["max_tokens"], hot["top_p"]) == (1.3, 40, 0.5)
    assert hot["messages"][0] == {"role": "system", "content": "You are a poet."}
    assert (plain["temperature"], plain["max_tokens"]) == (0.4, 99)
    assert plain["messages"][0]["role"] == "user"
    [agg] = [b for b in server.requests if b["model"] == "agg"]
    assert agg["temperature"] == 0.0
    assert agg["messages"][0]["content"].startswith("Be brief.\n\nYou have been provided")
    assert [p["model"] for p in out["proposals"]] == ["openai:hot", "openai:plain"]


async def test_samples_are_separate_calls_with_recorded_seeds(server: ScriptedOpenAIServer) -> None:
    ctx = MoAContext(
        proposers=[ModelSpec(model="openai:m", n=3, label="m x3")], aggregator="openai:agg", seed=7
    )
    out = await build_moa_graph().compile().ainvoke(QUESTION, context=ctx)

    records = out["proposals"]
    assert [(p["index"], p["sample"], p["model"]) for p in records] == [
        (0, 0, "m x3"), (1, 1, "m x3"), (2, 2, "m x3"),
    ]  # fmt: skip
    assert [p["seed"] for p in records] == [call_seed(7, 1, 0, s) for s in range(3)]
    assert sorted(b["seed"] for b in proposer_bodies(server)) == sorted(p["seed"] for p in records)
    assert out["aggregation"]["seeds"] == [call_seed(7, 2, 0, 0)]
    [agg] = [b for b in server.requests if b["model"] == "agg"]
    assert agg["seed"] == call_seed(7, 2, 0, 0)


async def test_a_fixed_seed_repeats_and_no_seed_draws_fresh_ones(
    server: ScriptedOpenAIServer,
) -> None:
    graph = build_moa_graph().compile()
    spec = ModelSpec(model="openai:m", n=2)

    def seeds(out: dict) -> list[int]:
        return [p["seed"] for p in out["proposals"]]

    settings = {"proposers": [spec], "aggregator": "openai:agg"}
    fixed = [seeds(await graph.ainvoke(QUESTION, context={**settings, "seed": 1}))
             for _ in range(2)]  # fmt: skip
    fresh = [seeds(await graph.ainvoke(QUESTION, context=settings)) for _ in range(2)]
    assert fixed[0] == fixed[1]
    assert fresh[0] != fresh[1] and len(set(fresh[0])) == 2


async def test_model_kwargs_base_url_reaches_another_server(server: ScriptedOpenAIServer) -> None:
    other = ScriptedOpenAIServer(script=lambda body: "from the other server").start()
    try:
        ctx = MoAContext(
            proposers=[ModelSpec(model="openai:far", model_kwargs={"base_url": other.url})],
            aggregator="openai:agg",
            max_tokens=12,
        )
        out = await build_moa_graph().compile().ainvoke(QUESTION, context=ctx)
    finally:
        other.stop()
    assert out["proposals"][0]["content"] == "from the other server"
    assert other.requests[0]["max_tokens"] == 12  # sent for OpenAI-compatible servers too
    assert all(b["model"] != "far" for b in server.requests)


def test_sync_invoke_over_http(server: ScriptedOpenAIServer) -> None:
    ctx = MoAContext(proposers=[ModelSpec(model="openai:m", n=2)], aggregator="openai:agg")
    out = build_moa_graph().compile().invoke(QUESTION, context=ctx)
    assert [p["status"] for p in out["proposals"]] == ["ok", "ok"]
    assert out["messages"][-1].content.startswith("answer from agg")
    assert len(server.requests) == 3
