"""`ModelSpec`: one proposer or aggregator model and its own settings.

A spec is given as plain text (``"openai:gpt-4o-mini"``), as a `ModelSpec`, or as a dict with
its keys; `to_model_spec` turns any of them into a `ModelSpec`. The compact command-line form
is the model text followed by ``key=value`` words: ``"local:smollm2 n=3 temperature=1.0"``.
"""

import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from moa_graph.errors import MoAConfigError
from moa_graph.validation import check_int, check_model_text, check_number

_CREDENTIAL = re.compile(r"api_?key|secret|password|credential|session_token|access_key", re.I)
_SPEC_FIELDS = ("temperature", "max_tokens", "seed", "n")
"""Settings that have a field of their own: refused in `model_kwargs`."""


@dataclass(kw_only=True)
class ModelSpec:
    """A model and its own settings: one entry of ``proposers``, or the ``aggregator``.

    JSON-friendly, so Studio's settings form, ``--context FILE.json`` and ``MOA_*`` variables can
    carry it. Fields left at None take the context's value.

    Attributes:
        model: ``"provider:model"``, resolved by LangChain's ``init_chat_model``; only the first
            ``:`` separates the provider. ``local:smollm2`` is the embedded model.
        n: Samples of this spec per layer (separate calls, each with its own seed; Self-MoA is one
            spec with ``n`` > 1). Must be 1 for the aggregator.
        temperature: Sampling temperature, 0 to 2; None = ``MoAContext.temperature``.
        max_tokens: Most tokens a call may generate; None = ``MoAContext.max_tokens``.
        timeout_s: Seconds a call may take; None = ``MoAContext.proposer_timeout_s`` for a
            proposer, no limit for the aggregator.
        system_prompt: A role for a proposer (its system message), or extra instructions put
            before the aggregator's prompt. None = none.
        model_kwargs: Passed to the model's constructor, e.g. ``{"top_p": 0.9}``,
            ``{"base_url": "http://localhost:11434/v1"}``, ``{"reasoning_effort": "low"}``.
            Never credentials: keys come from the provider's environment variables.
        label: Name shown in records and traces; None = `model`.
    """

    model: str
    n: int = 1
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_s: float | None = None
    system_prompt: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def name(self) -> str:
        """The label shown in records and traces: `label`, else `model`."""
        return self.label or self.model

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as a JSON-ready dict with only the fields that differ from defaults."""
        defaults = ModelSpec(model=self.model)
        return {k: v for k, v in asdict(self).items() if k == "model" or v != getattr(defaults, k)}


SpecLike = str | ModelSpec | dict[str, Any]
"""What a spec field accepts: model text, a `ModelSpec`, or a dict with its keys."""


def to_model_spec(name: str, value: object) -> ModelSpec:
    """Return `value` as a validated `ModelSpec`; errors name the field `name`.

    Args:
        name: The field being read, e.g. ``"proposers[1]"``, used in error messages.
        value: Model text (``"openai:gpt-4o"``, or the compact form
            ``"openai:gpt-4o n=3 temperature=0.2"``), a `ModelSpec`, or a dict of its keys.

    Raises:
        MoAConfigError: Unknown keys, a value of the wrong type or range, a model text that is
            not ``provider:model``, or credentials in ``model_kwargs``.
    """
    if isinstance(value, ModelSpec):
        spec = value
    elif isinstance(value, str):
        spec = _parse_compact(name, value)
    elif isinstance(value, dict):
        known = {f.name for f in fields(ModelSpec)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise MoAConfigError(
                f"{name} has unknown keys {unknown}: a model spec takes {sorted(known)}"
            )
        if "model" not in value:
            raise MoAConfigError(f"{name} needs a 'model' key, e.g. {{'model': 'openai:gpt-4o'}}")
        spec = ModelSpec(**value)
    else:
        raise MoAConfigError(
            f"{name}={value!r}: give model text such as 'openai:gpt-4o-mini', a ModelSpec, or a "
            "dict with a 'model' key"
        )
    check_model_spec(name, spec)
    return spec


def check_model_spec(name: str, spec: ModelSpec) -> None:
    """Raise unless every field of `spec` is valid; the error names ``name.field``.

    Raises:
        MoAConfigError: The first invalid field, with the fix.
    """
    check_model_text(name, spec.model)
    check_int(f"{name}.n", spec.n, minimum=1)
    if spec.temperature is not None:
        check_number(f"{name}.temperature", spec.temperature, minimum=0.0, maximum=2.0)
    if spec.max_tokens is not None:
        check_int(f"{name}.max_tokens", spec.max_tokens, minimum=1)
    if spec.timeout_s is not None:
        check_number(f"{name}.timeout_s", spec.timeout_s, minimum=0.001)
    for key in ("system_prompt", "label"):
        value = getattr(spec, key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise MoAConfigError(f"{name}.{key}={value!r}: must be non-empty text, or None")
    if not isinstance(spec.model_kwargs, dict):
        raise MoAConfigError(f"{name}.model_kwargs must be a dict of model settings")
    for key in spec.model_kwargs:
        if _CREDENTIAL.search(key):
            raise MoAConfigError(
                f"{name}.model_kwargs[{key!r}]: never put credentials in a spec (they would "
                "reach traces and saved settings); set the provider's environment variable, "
                "e.g. OPENAI_API_KEY"
            )
        if key in _SPEC_FIELDS:
            raise MoAConfigError(
                f"{name}.model_kwargs[{key!r}]: set it as the spec's own field, not in "
                "model_kwargs" + (" (seeds come from MoAContext.seed)" if key == "seed" else "")
            )


def _parse_compact(name: str, text: str) -> ModelSpec:
    """Parse ``"provider:model key=value ..."`` (values are JSON, else text)."""
    model, *settings = text.split()
    if not settings:
        return ModelSpec(model=text.strip())
    values: dict[str, Any] = {"model": model}
    kwargs: dict[str, Any] = {}
    known = {f.name for f in fields(ModelSpec)} - {"model", "model_kwargs"}
    for word in settings:
        key, sep, raw = word.partition("=")
        if not sep or not key:
            raise MoAConfigError(
                f"{name}={text!r}: after the model, give settings as key=value words, "
                "e.g. 'local:smollm2 n=3 temperature=1.0'"
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        (values if key in known else kwargs)[key] = value
    if kwargs:
        values["model_kwargs"] = kwargs
    return ModelSpec(**values)
