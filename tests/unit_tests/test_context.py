import pytest

from moa_graph import AGGREGATE_AND_SYNTHESIZE_PROMPT, MoAConfigError, MoAContext, ModelSpec


def test_defaults_are_self_moa_on_the_embedded_model() -> None:
    ctx = MoAContext()
    assert ctx.proposers == ["local:smollm2"] * 3
    assert ctx.aggregator == "local:smollm2"
    assert ctx.rounds == 1
    assert ctx.aggregator_prompt == AGGREGATE_AND_SYNTHESIZE_PROMPT


def test_environment_fills_fields_left_at_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_PROPOSERS", "openai:gpt-4o-mini, local:smollm2")
    monkeypatch.setenv("MOA_ROUNDS", "2")
    monkeypatch.setenv("MOA_TEMPERATURE", "0.2")
    monkeypatch.setenv("MOA_LAYER_PROPOSERS", "local:a,local:b;local:c")
    ctx = MoAContext(aggregator="openai:gpt-4o")
    assert ctx.proposers == ["openai:gpt-4o-mini", "local:smollm2"]
    assert ctx.rounds == 2
    assert ctx.temperature == 0.2
    assert ctx.layer_proposers == [["local:a", "local:b"], ["local:c"]]
    assert ctx.proposer_specs(2) == [ModelSpec(model="local:c")]


def test_explicit_values_other_than_the_default_beat_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOA_ROUNDS", "3")
    assert MoAContext(rounds=2).rounds == 2
    # A value equal to the default cannot be told from an unset one: the environment fills it.
    assert MoAContext(rounds=1).rounds == 3


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_ROUNDS", "two")
    with pytest.raises(MoAConfigError, match="MOA_ROUNDS='two'"):
        MoAContext()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rounds": 0}, "rounds=0: must be a whole number >= 1"),
        ({"rounds": True}, "rounds=True"),
        ({"proposers": []}, "proposers must be a non-empty list"),
        ({"proposers": ["gpt-4o"]}, r"proposers\[0\]='gpt-4o' is not a model spec"),
        ({"proposers": ["anthropic.claude-v2:1"]}, "must be a provider"),
        ({"aggregator": "openai:"}, "a model name must follow"),
        ({"temperature": 3}, "temperature=3: must be a number between"),
        ({"max_tokens": 0}, "max_tokens=0"),
        ({"proposer_timeout_s": 0}, "proposer_timeout_s=0"),
        ({"aggregator_prompt": " "}, "aggregator_prompt must be non-empty"),
        ({"first_k": 1, "min_proposals": 2}, "first_k=1: must be a whole number >= 2"),
        ({"layer_proposers": [["local:a"]], "rounds": 2}, "has 1 lists but rounds is 2"),
        ({"layer_proposers": [[]]}, r"layer_proposers\[0\] must be a non-empty list"),
    ],
)
def test_invalid_settings_name_the_field_and_the_fix(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(MoAConfigError, match=message):
        MoAContext(**kwargs)  # type: ignore[arg-type]


def test_bedrock_ids_with_colons_are_valid_specs() -> None:
    spec = "bedrock_converse:anthropic.claude-3-haiku-20240307-v1:0"
    assert MoAContext(aggregator=spec).aggregator == spec
