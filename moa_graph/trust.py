"""What settings from the network may do: the operator's allowlist and budgets.

A request's ``moa`` object (``POST /v1/chat/completions``) and the ``context`` of a run that
LangGraph's server creates (its HTTP API, Studio, ``/mcp``) come from whoever can reach the
port. They choose among what the operator configured, within the operator's budgets; they never
pick endpoints, credentials, headers or unbounded work. A model spec is where the danger lies:
``model_kwargs={"base_url": ...}`` would send the server's provider key to any address, and
``local:/path.gguf`` would load any file. The Python API is not guarded: its caller is the
operator. The docs page "Serving" (docs/serving.md) says where the boundary is.

The operator's settings (environment variables, read by `RequestPolicy.from_environment`):

- ``MOA_SERVE_ALLOW_FIELDS``: more ``MoAContext`` fields a request may set, comma-separated,
  beyond `SAFE_FIELDS` (e.g. ``answer_pattern,retries``).
- ``MOA_SERVE_ALLOW_MODELS``: model specs (``openai:gpt-4o-mini``) or whole providers
  (``openai:*``) a request may name in ``proposers``, ``layer_proposers`` or ``aggregator``;
  unset, a request cannot set those fields at all.
- Budgets, checked before any call: ``MOA_SERVE_MAX_ROUNDS`` (3), ``MOA_SERVE_MAX_CALLS`` (24
  model calls per request, see `moa_graph.budget`), ``MOA_SERVE_MAX_TOKENS`` (4096 per call),
  ``MOA_SERVE_MAX_TIMEOUT_S`` (300 s per call), ``MOA_SERVE_MAX_MESSAGES`` (256),
  ``MOA_SERVE_MAX_BODY_BYTES`` (2 MiB), and for each JSON Schema a request sends (a
  ``response_format``, a tool's parameters) ``MOA_SERVE_MAX_SCHEMA_BYTES`` (64 KiB),
  ``MOA_SERVE_MAX_SCHEMA_DEPTH`` (16 levels) and ``MOA_SERVE_MAX_SCHEMA_NODES`` (10,000 schemas
  at one place of an instance), and ``MOA_SERVE_MAX_REQUEST_SCHEMA_BYTES`` (256 KiB) for all of
  a request's schemas together. A schema is data: `moa_graph.json_schema` refuses what would
  fetch (a ``$ref`` outside itself, ``$dynamicRef``), loop in place or cost too much, and
  matches ``pattern`` in linear time (RE2).
- ``MOA_SERVE_GUARD_CONTEXT=true``: the graphs of langgraph.json admit every run's context
  with this policy in every node, and count the calls each run makes against its budget
  (`guard_from_environment`, `moa_graph.run_scope`).
"""

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from moa_graph.budget import check_max_calls, most_calls
from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.json_schema import SchemaRefused, check_document
from moa_graph.spec import ModelSpec, to_model_spec
from moa_graph.state import FIRST_STAGE

__all__ = [
    "SAFE_FIELDS",
    "RequestPolicy",
    "RequestRefused",
    "guard_from_environment",
]


SAFE_FIELDS = frozenset(
    {
        "rounds", "aggregator_mode", "first_k", "straggler_grace_s", "min_proposals",
        "reference_format", "shuffle_references", "seed", "window_size", "aggregator_prompt",
        "proposer_prompt", "temperature", "max_tokens", "proposer_timeout_s", "max_calls",
        "proposer_tools", "on_fewer_proposals", "skip_unavailable", "cascade_agreement",
        "judge_criteria", "judge_max_tokens",
    }
)  # fmt: skip
"""Fields a request may set by default: they shape a run over the operator's own models, and
the budgets bound the ones that cost (rounds, max_tokens, timeouts, calls). A field added to
`MoAContext` later is refused until it is listed here."""

MODEL_FIELDS = ("proposers", "layer_proposers", "aggregator", "cascade")
"""Fields that name models: refused unless ``MOA_SERVE_ALLOW_MODELS`` is set."""

WHY_REFUSED = {
    "retries": "the operator's retry budget",
    "rpm": "the operator's rate limits",
    "tpm": "the operator's rate limits",
    "review": "a review pauses the run for a person, and a request has no thread",
    "answer_pattern": "a regular expression from a request could backtrack for hours in "
    "Python's re",
    "tools": "tools are the request's own parameter, not a MoA setting",
    "tool_choice": "tool_choice is the request's own parameter, not a MoA setting",
}
"""Why a field is refused by default, for the error message."""

SAMPLING_KWARGS = frozenset(
    {
        "top_p", "top_k", "min_p", "typical_p", "stop", "stop_sequences", "frequency_penalty",
        "presence_penalty", "repetition_penalty", "repeat_penalty", "logit_bias",
        "reasoning_effort",
    }
)  # fmt: skip
"""``model_kwargs`` keys a request's model spec may hold: sampling only, never anything that
changes an endpoint, credentials, headers or the HTTP client."""

GUARD_ENV = "MOA_SERVE_GUARD_CONTEXT"
_SCHEMA_SETTINGS = {
    "max_depth": "MOA_SERVE_MAX_SCHEMA_DEPTH",
    "max_nodes": "MOA_SERVE_MAX_SCHEMA_NODES",
}


RefusalReason = Literal["not_allowed", "over_budget", "bad_schema", "unknown_setting"]


class RequestRefused(MoAConfigError):
    """A request set something the operator does not allow, or went over a budget.

    Attributes:
        param: The refused field, e.g. ``"moa.proposers[0].model_kwargs.base_url"``.
        status: The HTTP status to answer with (400, or 413 for a body over the limit).
        reason: Why, from a fixed set (the ``reason`` label of ``moa_refusals_total``):
            ``not_allowed`` (a field, model or model setting that is the operator's),
            ``over_budget`` (over a ``MOA_SERVE_MAX_*`` budget), ``bad_schema`` (a JSON Schema
            refused) or ``unknown_setting`` (not a MoA setting, or not a model spec).
    """

    def __init__(
        self, param: str, message: str, *, status: int = 400,
        reason: RefusalReason = "not_allowed",
    ):  # fmt: skip
        super().__init__(message)
        self.param = param
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class RequestPolicy:
    """The operator's rules for settings that arrive over a network.

    Attributes:
        allow_fields: ``MoAContext`` fields a request may set (default `SAFE_FIELDS`).
        allow_models: Model specs (``"openai:gpt-4o-mini"``) or providers (``"openai:*"``) a
            request may name; empty: requests cannot set model fields.
        max_rounds: Most proposer layers of one request.
        max_calls: Most model calls one request may cause (`moa_graph.budget.most_calls`).
        max_tokens: Most tokens any one call may generate.
        max_timeout_s: Most seconds for a call's timeout and for ``straggler_grace_s``.
        max_messages: Most messages in one request.
        max_body_bytes: Most bytes of one request body.
        max_schema_bytes: Most bytes (as JSON) of one JSON Schema in a request.
        max_schema_depth: Most nested schema levels of one JSON Schema in a request.
        max_schema_nodes: Most schemas one place of an instance may be checked against
            (references and in-place keywords expanded; `moa_graph.json_schema`).
        max_request_schema_bytes: Most bytes of all the JSON Schemas of one request
            together (tools and ``response_format``).
    """

    allow_fields: frozenset[str] = SAFE_FIELDS
    allow_models: tuple[str, ...] = ()
    max_rounds: int = 3
    max_calls: int = 24
    max_tokens: int = 4096
    max_timeout_s: float = 300.0
    max_messages: int = 256
    max_body_bytes: int = 2 * 1024 * 1024
    max_schema_bytes: int = 64 * 1024
    max_schema_depth: int = 16
    max_schema_nodes: int = 10_000
    max_request_schema_bytes: int = 256 * 1024

    @classmethod
    def from_environment(cls) -> "RequestPolicy":
        """Return the policy the ``MOA_SERVE_*`` variables set (see the module docstring).

        Raises:
            MoAConfigError: A variable is not a positive number, or names an unknown field.
        """
        known = {f.name for f in dataclasses.fields(MoAContext)}
        extra = set(_words(os.environ.get("MOA_SERVE_ALLOW_FIELDS", "")))
        if unknown := sorted(extra - known):
            raise MoAConfigError(
                f"MOA_SERVE_ALLOW_FIELDS names {unknown}, which are not MoAContext fields"
            )
        if models := extra & set(MODEL_FIELDS):
            raise MoAConfigError(
                f"MOA_SERVE_ALLOW_FIELDS names {sorted(models)}: allow models with "
                "MOA_SERVE_ALLOW_MODELS (specs or 'provider:*') instead"
            )
        numbers = {
            f.name: _positive(f"MOA_SERVE_{f.name.upper()}", f.default)
            for f in dataclasses.fields(cls)
            if f.name.startswith("max_")
        }
        return cls(
            allow_fields=SAFE_FIELDS | extra,
            allow_models=tuple(_words(os.environ.get("MOA_SERVE_ALLOW_MODELS", ""))),
            **numbers,
        )

    def check_request(self, settings: dict[str, Any]) -> None:
        """Refuse the fields of a request's ``moa`` object that the operator does not allow.

        Args:
            settings: The ``moa`` object, before it becomes a `MoAContext`.

        Raises:
            RequestRefused: A field outside the allowlist, a model field without
                ``MOA_SERVE_ALLOW_MODELS``, a model not allowed, or ``model_kwargs`` beyond
                sampling keys; ``param`` names it (``moa.<field>``).
        """
        known = {f.name for f in dataclasses.fields(MoAContext)}
        for name, value in settings.items():
            param = f"moa.{name}"
            if name not in known:
                raise RequestRefused(
                    param,
                    f"{param} is not a MoA setting: MoAContext takes {sorted(known)}",
                    reason="unknown_setting",
                )
            if name in MODEL_FIELDS:
                if not self.allow_models:
                    raise RequestRefused(
                        param,
                        f"{param}: a request cannot choose models on this server; the operator "
                        "allows it with MOA_SERVE_ALLOW_MODELS (specs, or 'provider:*')",
                    )
                for where, spec in _specs(param, name, value):
                    self._check_spec(where, spec, operator=())
            elif name not in self.allow_fields:
                reason = WHY_REFUSED.get(name, "the operator's to set")
                raise RequestRefused(
                    param,
                    f"{param} cannot be set by a request ({reason}); the operator allows it "
                    f"with MOA_SERVE_ALLOW_FIELDS={name}",
                )

    def check_context(self, ctx: MoAContext, operator: MoAContext) -> MoAContext:
        """Refuse a run's context that differs from the operator's where no request may.

        For runs whose context a caller chose as a whole (LangGraph's server merges the
        assistant's and the run's context): every field outside the allowlist must equal the
        operator's value, and every model must be one of the operator's, or allowed, with
        ``model_kwargs`` equal to the operator's spec of that model or sampling keys only.
        Graphs apply it through `moa_graph.run_scope.run_context`, once per run.

        Args:
            ctx: The run's settings.
            operator: The operator's settings (``MoAContext()``: the ``MOA_*`` variables).

        Returns:
            `ctx` with ``max_calls`` bounded by the budget (`check_budget`).

        Raises:
            RequestRefused: What is refused, with ``param`` ``context.<field>``.
        """
        ours = [s for name in MODEL_FIELDS for _, s in _specs("", name, getattr(operator, name))]
        for f in dataclasses.fields(MoAContext):
            value, param = getattr(ctx, f.name), f"context.{f.name}"
            if f.name in MODEL_FIELDS:
                for where, spec in _specs(param, f.name, value):
                    self._check_spec(where, spec, operator=ours)
            elif f.name not in self.allow_fields and value != getattr(operator, f.name):
                reason = WHY_REFUSED.get(f.name, "the operator's to set")
                raise RequestRefused(
                    param,
                    f"{param} differs from the server's setting ({reason}); the operator "
                    f"allows it with MOA_SERVE_ALLOW_FIELDS={f.name}",
                )
        return self.check_budget(ctx, prefix="context")

    def check_budget(self, ctx: MoAContext, *, prefix: str = "moa") -> MoAContext:
        """Refuse a run over the budgets; return `ctx` with ``max_calls`` bounded by them.

        The calls are counted from the context's specs; the returned context carries
        ``max_calls``, so the graph also refuses a run whose real layers (models given as
        instances) would make more.

        Args:
            ctx: The run's settings.
            prefix: The start of ``param`` in errors (``moa`` or ``context``).

        Raises:
            RequestRefused: ``rounds``, a call's ``max_tokens`` or timeout, or the run's calls
                over the budget; the message names the ``MOA_SERVE_*`` variable.
        """
        if ctx.rounds > self.max_rounds:
            raise _over(f"{prefix}.rounds", ctx.rounds, self.max_rounds, "MAX_ROUNDS")
        specs = [
            (where, spec)
            for field in MODEL_FIELDS
            for where, spec in _specs(f"{prefix}.{field}", field, getattr(ctx, field))
        ]
        judge = [(f"{prefix}.judge_max_tokens", ctx.judge_max_tokens)]
        for param, tokens in (
            [(f"{prefix}.max_tokens", ctx.max_tokens)]
            + judge * (ctx.aggregator_mode == "analyze")
            + [(f"{where}.max_tokens", s.max_tokens) for where, s in specs if s.max_tokens]
        ):
            if tokens > self.max_tokens:
                raise _over(param, tokens, self.max_tokens, "MAX_TOKENS")
        timeouts = [
            (f"{prefix}.proposer_timeout_s", ctx.proposer_timeout_s),
            (f"{prefix}.straggler_grace_s", ctx.straggler_grace_s),
        ] + [(f"{where}.timeout_s", s.timeout_s) for where, s in specs if s.timeout_s]
        for param, seconds in timeouts:
            if seconds is not None and seconds > self.max_timeout_s:
                raise _over(param, seconds, self.max_timeout_s, "MAX_TIMEOUT_S")
        sizes = [sum(s.n for s in ctx.proposer_specs(k)) for k in range(1, ctx.rounds + 1)]
        try:
            check_max_calls(
                self.max_calls,
                most_calls(
                    ctx.aggregator_mode,
                    ctx.window_size,
                    sizes,
                    first_stage=sum(s.n for s in ctx.proposer_specs(FIRST_STAGE)),
                ),
                setting="MOA_SERVE_MAX_CALLS",
            )
        except MoAConfigError as exc:
            raise RequestRefused(prefix, str(exc)) from None  # the run as a whole
        bound = self.max_calls if ctx.max_calls is None else min(ctx.max_calls, self.max_calls)
        return dataclasses.replace(ctx, max_calls=bound)

    def check_messages(self, count: int) -> None:
        """Refuse a request of more than ``max_messages`` messages.

        Raises:
            RequestRefused: With ``param`` ``messages``.
        """
        if count > self.max_messages:
            raise _over("messages", count, self.max_messages, "MAX_MESSAGES", unit=" messages")

    def check_schema(self, param: str, schema: object) -> int:
        """Refuse a JSON Schema from a request that could fetch, loop or cost too much.

        Args:
            param: Where it is, e.g. ``response_format.json_schema.schema``.
            schema: The schema.

        Returns:
            Its size in bytes (as JSON), for the request's total (`check_schema_total`).

        Raises:
            RequestRefused: Not an object, over ``max_schema_bytes``, ``max_schema_depth`` or
                ``max_schema_nodes``, or anything `moa_graph.json_schema.check_document`
                refuses (a reference outside the schema, ``$dynamicRef``, an in-place loop, a
                ``pattern`` RE2 cannot run); ``param`` says where
                (``...schema.properties.name.$ref``).
        """
        if not isinstance(schema, dict):
            raise RequestRefused(
                param, f"{param} must be a JSON Schema object", reason="bad_schema"
            )
        try:
            size = len(json.dumps(schema))
        except (RecursionError, ValueError):
            raise RequestRefused(param, f"{param} nests too deeply", reason="bad_schema") from None
        if size > self.max_schema_bytes:
            raise _over(param, size, self.max_schema_bytes, "MAX_SCHEMA_BYTES", unit=" bytes")
        try:
            check_document(schema, max_depth=self.max_schema_depth, max_nodes=self.max_schema_nodes)
        except SchemaRefused as exc:
            where = f"{param}{exc.where}"
            setting = _SCHEMA_SETTINGS.get(exc.bound or "")
            hint = f"; simplify it, or the operator raises {setting}" if setting else ""
            raise RequestRefused(where, f"{where}: {exc}{hint}", reason="bad_schema") from None
        return size

    def check_schema_total(self, size: int) -> None:
        """Refuse a request whose JSON Schemas add up to more than ``max_request_schema_bytes``.

        Raises:
            RequestRefused: With ``param`` ``tools``.
        """
        if size > self.max_request_schema_bytes:
            raise _over("tools", size, self.max_request_schema_bytes, "MAX_REQUEST_SCHEMA_BYTES",
                        unit=" bytes of JSON Schema")  # fmt: skip

    def check_model_text(self, param: str, model: str, operator: Iterable[str]) -> None:
        """Refuse model text that is neither one of the operator's nor allowed.

        Raises:
            RequestRefused: The model is not allowed; the message names the setting.
        """
        if model in operator or any(_matches(model, allowed) for allowed in self.allow_models):
            return
        raise RequestRefused(
            param,
            f"{param}={model!r} is not a model this server offers; the operator allows it with "
            "MOA_SERVE_ALLOW_MODELS (specs, or 'provider:*')",
        )

    def _check_spec(self, param: str, spec: ModelSpec, *, operator: Iterable[ModelSpec]) -> None:
        same_model = [s for s in operator if s.model == spec.model]
        self.check_model_text(f"{param}.model", spec.model, [s.model for s in same_model])
        if any(s.model_kwargs == spec.model_kwargs for s in same_model):
            return
        for key in spec.model_kwargs:
            if key not in SAMPLING_KWARGS:
                raise RequestRefused(
                    f"{param}.model_kwargs.{key}",
                    f"{param}.model_kwargs.{key}: a request's model settings may hold only "
                    f"sampling keys ({', '.join(sorted(SAMPLING_KWARGS))}); endpoints, "
                    "credentials, headers and clients are the operator's",
                )


def guard_from_environment() -> RequestPolicy | None:
    """Return the policy for every run's context when ``MOA_SERVE_GUARD_CONTEXT`` is true.

    For the graphs a LangGraph server loads (graphs/moa.py): with the variable set, a run's
    context (from the server's HTTP API, Studio or ``/mcp``) cannot choose models, endpoints or
    budgets beyond the operator's. Unset or false: no guard (Studio on your own machine).

    Raises:
        MoAConfigError: The variable is not true/false, or the policy's variables are invalid.
    """
    raw = os.environ.get(GUARD_ENV, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return None
    if raw not in ("1", "true", "yes"):
        raise MoAConfigError(f"{GUARD_ENV}={raw!r}: use true or false")
    return RequestPolicy.from_environment()


def _specs(param: str, name: str, value: object) -> Iterator[tuple[str, ModelSpec]]:
    """Each model spec of a model field, with its place (``param[i]``, ``param[i][j]``)."""
    if value is None:
        return
    if name == "aggregator":
        yield param, _spec(param, value)
    elif name in ("proposers", "cascade") and isinstance(value, list):
        for i, item in enumerate(value):
            yield f"{param}[{i}]", _spec(f"{param}[{i}]", item)
    elif name == "layer_proposers" and isinstance(value, list):
        for i, layer in enumerate(value):
            for j, item in enumerate(layer if isinstance(layer, list) else [layer]):
                yield f"{param}[{i}][{j}]", _spec(f"{param}[{i}][{j}]", item)
    else:
        raise RequestRefused(param, f"{param} must be a list of model specs",
                             reason="unknown_setting")  # fmt: skip


def _spec(param: str, value: object) -> ModelSpec:
    try:
        return to_model_spec(param, value)
    except MoAConfigError as exc:
        raise RequestRefused(param, str(exc), reason="unknown_setting") from None


def _matches(model: str, allowed: str) -> bool:
    if allowed.endswith(":*"):
        return model.split(":", 1)[0] == allowed[:-2]
    return model == allowed


def _over(param: str, value: float, limit: float, name: str, unit: str = "") -> RequestRefused:
    return RequestRefused(
        param,
        f"{param}={value:g}{unit} is over this server's limit of {limit:g}: ask for less, or "
        f"the operator raises MOA_SERVE_{name}",
        reason="over_budget",
    )


def _words(text: str) -> list[str]:
    return [word.strip() for word in text.split(",") if word.strip()]


def _positive(name: str, default: Any) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = type(default)(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise MoAConfigError(f"{name}={raw!r}: must be a number > 0")
    return value
