"""Per-run settings of the MoA graph: the `context_schema` Studio shows as assistant settings."""

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self, cast, get_args

from moa_graph.environment import fill_from_environment
from moa_graph.errors import MoAConfigError
from moa_graph.presets import preset_settings
from moa_graph.prompts import AGGREGATE_AND_SYNTHESIZE_PROMPT
from moa_graph.spec import ModelSpec, to_model_spec
from moa_graph.state import FIRST_STAGE
from moa_graph.validation import (
    DEFAULT_LOCAL_MODEL,
    check_choice,
    check_int,
    check_number,
    check_pattern,
    check_rates,
    check_text,
    check_tools,
)

AggregatorMode = Literal["synthesize", "select", "vote", "sequential", "analyze"]
ReferenceFormat = Literal["numbered", "tagged"]
FewerProposals = Literal["answer", "fail"]
_MODES: tuple[str, ...] = get_args(AggregatorMode)
PROPOSAL_MODES = frozenset({"select", "vote"})
"""Aggregator modes whose answer is one proposal: for an answer that must be a tool call (or a
structured object), their proposers need the tools too."""
_FORMATS: tuple[str, ...] = get_args(ReferenceFormat)
_FEWER: tuple[str, ...] = get_args(FewerProposals)


class _NamedFields(type):
    """Refuse unknown settings by name, with the closest field, before the dataclass runs.

    LangGraph turns a dict context into the schema with ``MoAContext(**context)``; a typo would
    otherwise be Python's bare ``TypeError``.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        known = [f.name for f in dataclasses.fields(cast(Any, cls))]
        for name in kwargs:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f": did you mean {close[0]!r}?" if close else f"; it takes {sorted(known)}"
                raise MoAConfigError(f"{name!r} is not a {cls.__name__} setting{hint}")
        return super().__call__(*args, **kwargs)


@dataclass(kw_only=True)
class MoAContext(metaclass=_NamedFields):
    """Settings of one MoA run, passed as ``graph.ainvoke(inputs, context=MoAContext(...))``.

    A dict with the same keys works too. A field left at its default is read from the
    environment variable ``MOA_<FIELD>`` when that is set: ``MOA_PROPOSERS`` as a comma-separated
    list or a JSON list, ``MOA_LAYER_PROPOSERS`` as layers separated by ``;`` (or JSON),
    ``MOA_AGGREGATOR`` as model text or a JSON object, booleans as ``true``/``false``.
    With nothing set, the run is Self-MoA on the embedded model: three samples of
    ``local:smollm2`` and the same model as aggregator, one round (MoA-Lite's shape).

    Model fields take model text (``"openai:gpt-4o-mini"``), a `ModelSpec`, or a dict of its
    keys; dicts are turned into `ModelSpec` here, text stays text.

    Source: Wang et al., arXiv 2406.04692, section 2.2 (layers, proposers, aggregator); the
    defaults of temperature and max_tokens follow togethercomputer/MoA ``bot.py``. The modes
    and options cite their papers in their descriptions.

    Raises:
        MoAConfigError: A field or its environment variable is invalid; the message names it.
    """

    proposers: list[str | ModelSpec] = field(
        default_factory=lambda: [DEFAULT_LOCAL_MODEL] * 3,
        metadata={
            "description": "Proposer models of every layer: 'provider:model' text, e.g. "
            "'openai:gpt-4o-mini', 'bedrock_converse:anthropic.claude-3-haiku-20240307-v1:0', "
            "'local:smollm2' (the embedded model), or a model spec object with its own settings "
            "(model, n, temperature, max_tokens, timeout_s, system_prompt, model_kwargs, label). "
            "n > 1 samples a spec several times (Self-MoA)."
        },
    )
    layer_proposers: list[list[str | ModelSpec]] | None = field(
        default=None,
        metadata={
            "description": "Optional: a different list of proposers for each layer, one "
            "list per round. When set it replaces 'proposers' and must have 'rounds' lists."
        },
    )
    aggregator: str | ModelSpec = field(
        default=DEFAULT_LOCAL_MODEL,
        metadata={
            "description": "The model that reads the last layer's proposals and writes the "
            "final answer: 'provider:model' text or a model spec object (n must be 1)."
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
        metadata={
            "description": "Sampling temperature (0 to 2) of models given as specs, unless a "
            "spec sets its own."
        },
    )
    max_tokens: int = field(
        default=512,
        metadata={
            "description": "Most tokens each model call may generate (specs only), unless a "
            "spec sets its own."
        },
    )
    aggregator_mode: AggregatorMode = field(
        default="synthesize",
        metadata={
            "description": "How the last layer's proposals become the answer. 'synthesize': the "
            "aggregator writes a new answer from them (the paper). 'select': the aggregator "
            "picks the most consistent proposal, returned verbatim (Universal Self-Consistency, "
            "arXiv 2311.17311). 'vote': the most common extracted answer wins, no aggregator "
            "call (arXiv 2402.05120). 'sequential': the aggregator improves the best answer so "
            "far with window_size new proposals at a time (Self-MoA-Seq, arXiv 2502.00674). "
            "'analyze': the fusion judge, two calls: a typed analysis of the proposals at "
            "temperature 0 (consensus, contradictions, partial coverage, unique insights, blind "
            "spots, an assessment per source), kept in the aggregation record, then the answer "
            "written from it; an analysis that does not parse falls back to synthesis."
        },
    )
    judge_max_tokens: int = field(
        default=768,
        metadata={
            "description": "For 'analyze': most tokens of the judge's analysis (the answer "
            "keeps the aggregator's max_tokens). An analysis cut off at this bound does not "
            "parse, and the run falls back to synthesis."
        },
    )
    judge_criteria: str | None = field(
        default=None,
        metadata={
            "description": "For 'analyze': a rubric the judge weighs in both of its calls, in "
            "your words (e.g. 'correctness first, then brevity'). Empty: none."
        },
    )
    aggregator_prompt: str = field(
        default=AGGREGATE_AND_SYNTHESIZE_PROMPT,
        metadata={
            "description": "System prompt given to the aggregator; the references are appended "
            "after it. Default: the paper's Aggregate-and-Synthesize prompt (Table 1)."
        },
    )
    proposer_prompt: str | None = field(
        default=None,
        metadata={
            "description": "System prompt given to proposers of layers after the first, with "
            "the previous layer's references appended. Empty: the aggregator prompt, as the "
            "reference implementation does."
        },
    )
    answer_pattern: str | None = field(
        default=None,
        metadata={
            "description": "For 'vote': a regular expression whose first group is a proposal's "
            "answer (its last match counts). Empty: the last number in the text when every "
            "proposal has one, else the whole text, normalized."
        },
    )
    window_size: int = field(
        default=3,
        metadata={
            "description": "For 'sequential': new proposals the aggregator sees per step, next "
            "to the best answer so far."
        },
    )
    min_proposals: int = field(
        default=1,
        metadata={
            "description": "How many proposers of a layer must answer for the run to go on; "
            "failed proposers are left out of the references."
        },
    )
    on_fewer_proposals: FewerProposals = field(
        default="answer",
        metadata={
            "description": "When some proposers of a layer fail or time out: 'answer' goes on "
            "with those that answered (at least min_proposals), and the records, ChatMoA's "
            "response_metadata and the API's x-moa-proposals header say so; 'fail' ends the "
            "run with ProposerQuorumError instead. Calls cut off by first_k are not failures."
        },
    )
    cascade: list[str | ModelSpec] | None = field(
        default=None,
        metadata={
            "description": "A cascade's first stage: cheap proposer calls asked before the "
            "MoA, e.g. ['local:smollm2 n=3']. When at least cascade_agreement of their answers "
            "agree (the same extracted answer, as a vote compares them, or the same tool call), "
            "that answer is returned at once; otherwise the run escalates to the configured "
            "layers and aggregator. Empty: no cascade (FrugalGPT, arXiv 2305.05176)."
        },
    )
    cascade_agreement: float = field(
        default=1.0,
        metadata={
            "description": "With cascade: the share (above 0, at most 1) of first-stage answers "
            "that must agree for the cascade to answer alone; 1.0: all of them."
        },
    )
    skip_unavailable: bool = field(
        default=False,
        metadata={
            "description": "A proposer whose provider credentials (or region) are not set is "
            "left out: it is recorded as failed ('ModelUnavailable: ...') and nothing is sent. "
            "Off: such a spec stops the run before any call. The aggregator is never skipped."
        },
    )
    first_k: int | None = field(
        default=None,
        metadata={
            "description": "Straggler cut-off: a layer goes on once this many proposers have "
            "answered (plus straggler_grace_s) and the calls still running are cancelled. "
            "Empty: wait for every proposer."
        },
    )
    straggler_grace_s: float = field(
        default=0.0,
        metadata={
            "description": "With first_k: seconds to wait for more answers after the k-th one "
            "before cancelling the rest."
        },
    )
    proposer_timeout_s: float = field(
        default=120.0,
        metadata={
            "description": "Seconds a proposer call may take, queueing included, before it is "
            "counted as failed (a spec's timeout_s wins)."
        },
    )
    max_calls: int | None = field(
        default=None,
        metadata={
            "description": "Most model calls one run may make (every proposer call of every "
            "layer, samples included, plus the aggregator's calls); a run that could make more "
            "is refused before any call. Empty: no bound."
        },
    )
    retries: int = field(
        default=2,
        metadata={
            "description": "Further attempts of a model call after a rate limit (429), a "
            "server error (5xx), a lost connection or a timeout, with exponential backoff and "
            "jitter; never after other errors (e.g. a too-long prompt)."
        },
    )
    rpm: dict[str, float] = field(
        default_factory=dict,
        metadata={
            "description": "Requests per minute, by provider ('openai') or model "
            "('openai:gpt-4o-mini'), shared by every call in this process. Time waiting for "
            "a slot does not count towards a call's timeout."
        },
    )
    tpm: dict[str, int] = field(
        default_factory=dict,
        metadata={
            "description": "Tokens (input + output) per minute, by provider or model, shared "
            "likewise; a call reserves its estimate before it starts."
        },
    )
    reference_format: ReferenceFormat = field(
        default="numbered",
        metadata={
            "description": "How references are shown to a model. 'numbered': '1. ...' as in "
            "the paper. 'tagged': each inside tags that carry a random key, so a proposal "
            "cannot forge the start of another reference (against prompt injection)."
        },
    )
    shuffle_references: bool = field(
        default=False,
        metadata={
            "description": "Show references in a random order in each prompt, against "
            "position bias (the records keep their order)."
        },
    )
    seed: int | None = field(
        default=None,
        metadata={
            "description": "Empty: every call gets a fresh random seed. A number: every call's "
            "seed is derived from it (and the layer, proposer and sample), so runs repeat where "
            "the provider honours seeds. The seed used is in each record."
        },
    )
    tools: list[dict[str, Any]] | None = field(
        default=None,
        metadata={
            "description": "Tools the aggregator may call, as OpenAI function tools ({'type': "
            "'function', 'function': {'name', 'description', 'parameters'}}); its tool calls "
            "are then the answer. The proposers answer in text and see earlier tool calls and "
            "results as text. Applies where the aggregator writes the answer (synthesize, "
            "sequential, and the fallbacks to synthesis). Empty: no tools."
        },
    )
    tool_choice: str | dict[str, Any] | None = field(
        default=None,
        metadata={
            "description": "With tools: 'auto', 'none', 'required' (or 'any'), a tool's name, "
            "or {'type': 'function', 'function': {'name': ...}}; passed to the aggregator. "
            "Empty: the provider's default."
        },
    )
    proposer_tools: bool = field(
        default=False,
        metadata={
            "description": "With tools: give the proposers the tools too. Each proposal may "
            "then be a tool call, which the references show; in 'vote' mode the answer is the "
            "most common call (its name and arguments), a draw going to the earliest "
            "(ensemble function calling). Off: the proposers answer in text. Without tools it has "
            "no effect (a ChatMoA gets its tools from bind_tools)."
        },
    )
    review: bool = field(
        default=False,
        metadata={
            "description": "Pause before the aggregator so a person can keep, drop or edit the "
            "last layer's proposals (LangGraph interrupt; needs a checkpointer, as Studio has)."
        },
    )

    def __post_init__(self) -> None:
        fill_from_environment(self)
        self._validate()

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        """Return the settings of a named MoA shape, with `overrides` on top.

        Presets: ``"moa"`` (rounds=2), ``"moa-lite"`` (rounds=1), ``"self-moa"`` (one spec
        sampled 6 times, rounds=1), ``"self-moa-seq"`` (the same, ``sequential``), ``"usc"``
        (``select``), ``"vote"``. The caller names the models; see `moa_graph.presets`.

        Raises:
            MoAConfigError: Unknown preset, or invalid settings.
        """
        return cls(**preset_settings(name, overrides))

    def with_tools(
        self,
        tools: Sequence[dict[str, Any]] = (),
        tool_choice: str | dict[str, Any] | None = None,
        *,
        answer_tool: dict[str, Any] | None = None,
    ) -> Self:
        """Return these settings answering with tool calls: the one way a run gets tools.

        ChatMoA's ``bind_tools`` and ``with_structured_output``, ``/v1``'s ``tools`` and
        ``response_format``, ``moa-graph batch --schema`` and the evaluation's tool suites all
        come here, so the same tools make the same system everywhere.

        Where the answer is one proposal (``vote`` and ``select``, `PROPOSAL_MODES`) the
        proposers get the tools too: each proposal must be able to be the call (ensemble
        function calling; what the tool-call figures measure). In the other modes the
        aggregator acts and the proposers answer in text, seeing earlier tool turns as text.
        ``proposer_tools=True`` gives the proposers the tools in every mode.

        Args:
            tools: OpenAI function tools (``{"type": "function", "function": {...}}``).
            tool_choice: ``"auto"``, ``"none"``, ``"required"`` (``"any"`` is the same), a
                tool's name or an OpenAI tool-choice dict. ``"required"`` with one tool becomes
                that tool's name, which every provider forces (llama-cpp-python ignores
                ``"required"``).
            answer_tool: A schema as a tool (`moa_graph.tool_turns.schema_tool`) whose
                arguments are the answer's object: alone it is forced by name; with `tools`
                the answer calls one of them or it (a call is required: ``"auto"`` or no
                choice becomes ``"required"``, ``"none"`` leaves only the object).

        Raises:
            MoAConfigError: A tool or the choice is malformed.
        """
        offered = [*tools, *([answer_tool] if answer_tool is not None else [])]
        if answer_tool is not None:
            name = answer_tool["function"]["name"]
            if not tools or tool_choice == "none":
                tool_choice = name
            elif tool_choice in (None, "auto"):
                tool_choice = "required"
        if tool_choice == "any":
            tool_choice = "required"
        if tool_choice == "required" and len(offered) == 1:
            tool_choice = offered[0]["function"]["name"]
        return dataclasses.replace(
            self,
            tools=offered or None,
            tool_choice=tool_choice if offered else None,
            proposer_tools=self.proposer_tools or self.aggregator_mode in PROPOSAL_MODES,
        )

    def proposer_specs(self, layer: int) -> list[ModelSpec]:
        """Return the proposer specs of a 1-based `layer`, as `ModelSpec` objects.

        `moa_graph.state.FIRST_STAGE` (0) is the cascade's first stage (empty without
        ``cascade``).
        """
        if layer == FIRST_STAGE:
            return [to_model_spec("cascade", spec) for spec in self.cascade or []]
        given = self.layer_proposers[layer - 1] if self.layer_proposers else self.proposers
        return [to_model_spec("proposers", spec) for spec in given]

    def aggregator_spec(self) -> ModelSpec:
        """Return the aggregator as a `ModelSpec`."""
        return to_model_spec("aggregator", self.aggregator)

    def _validate(self) -> None:
        self.proposers = _check_specs("proposers", self.proposers)
        if self.cascade is not None:
            self.cascade = _check_specs("cascade", self.cascade)
        check_number("cascade_agreement", self.cascade_agreement, minimum=0.001, maximum=1.0)
        if self.layer_proposers is not None:
            if not isinstance(self.layer_proposers, list) or not self.layer_proposers:
                raise MoAConfigError(
                    "layer_proposers must be a non-empty list of lists of model specs, or None"
                )
            self.layer_proposers = [
                _check_specs(f"layer_proposers[{i}]", specs)
                for i, specs in enumerate(self.layer_proposers)
            ]
        aggregator = to_model_spec("aggregator", self.aggregator)
        if aggregator.n != 1:
            raise MoAConfigError(
                f"aggregator.n={aggregator.n}: the aggregator writes one answer, so n must be 1; "
                "sample proposers instead"
            )
        if isinstance(self.aggregator, dict):
            self.aggregator = aggregator
        check_int("rounds", self.rounds, minimum=1)
        if self.layer_proposers is not None and len(self.layer_proposers) != self.rounds:
            raise MoAConfigError(
                f"layer_proposers has {len(self.layer_proposers)} lists but rounds is "
                f"{self.rounds}: give one list per round, or set rounds="
                f"{len(self.layer_proposers)}"
            )
        check_number("temperature", self.temperature, minimum=0.0, maximum=2.0)
        check_int("max_tokens", self.max_tokens, minimum=1)
        check_choice("aggregator_mode", self.aggregator_mode, _MODES)
        check_text("aggregator_prompt", self.aggregator_prompt, "for the paper's prompt")
        if self.proposer_prompt is not None:
            check_text("proposer_prompt", self.proposer_prompt, "to use aggregator_prompt")
        if self.answer_pattern is not None:
            check_pattern(self.answer_pattern)
        check_int("judge_max_tokens", self.judge_max_tokens, minimum=1)
        if self.judge_criteria is not None:
            check_text("judge_criteria", self.judge_criteria, "for no rubric")
        check_int("window_size", self.window_size, minimum=1)
        check_int("min_proposals", self.min_proposals, minimum=1)
        check_choice("on_fewer_proposals", self.on_fewer_proposals, _FEWER)
        check_number("straggler_grace_s", self.straggler_grace_s, minimum=0.0)
        check_number("proposer_timeout_s", self.proposer_timeout_s, minimum=0.001)
        check_choice("reference_format", self.reference_format, _FORMATS)
        for name in ("shuffle_references", "review", "proposer_tools", "skip_unavailable"):
            if not isinstance(getattr(self, name), bool):
                raise MoAConfigError(f"{name}={getattr(self, name)!r}: must be true or false")
        if self.seed is not None:
            check_int("seed", self.seed, minimum=0)
        check_int("retries", self.retries, minimum=0)
        if self.max_calls is not None:
            check_int("max_calls", self.max_calls, minimum=1)
        for name in ("rpm", "tpm"):
            check_rates(name, getattr(self, name))
        if self.first_k is not None:
            check_int("first_k", self.first_k, minimum=self.min_proposals)
        check_tools(self.tools, self.tool_choice)
        # Limits that depend on the layer sizes are checked when a run starts
        # (`check_layer_sizes`): the graph may run model instances instead of these specs.

    @property
    def references_prompt(self) -> str:
        """The system prompt of later-layer proposers: `proposer_prompt`, else the aggregator's."""
        return self.proposer_prompt or self.aggregator_prompt


def check_layer_sizes(ctx: MoAContext, sizes: list[int]) -> None:
    """Raise unless every layer, of `sizes` proposer calls each, fits `min_proposals`/`first_k`.

    Raises:
        MoAConfigError: ``min_proposals`` above a layer's size, or ``first_k`` outside
            ``min_proposals <= first_k <= layer size``.
    """
    smallest = min(sizes)
    if ctx.min_proposals > smallest:
        raise MoAConfigError(
            f"min_proposals is {ctx.min_proposals} but a layer has only {smallest} "
            f"proposers: lower min_proposals or add proposers"
        )
    if ctx.first_k is not None and not ctx.min_proposals <= ctx.first_k <= smallest:
        raise MoAConfigError(
            f"first_k={ctx.first_k}: must be between min_proposals ({ctx.min_proposals}) "
            f"and the smallest layer's size ({smallest}); leave it empty to wait for all"
        )


def _check_specs(name: str, specs: object) -> list[str | ModelSpec]:
    """Validate a list of specs; return it with dicts turned into `ModelSpec`."""
    if not isinstance(specs, list) or not specs:
        raise MoAConfigError(
            f"{name} must be a non-empty list of model specs ('provider:model' text or objects)"
        )
    checked: list[str | ModelSpec] = []
    for i, spec in enumerate(specs):
        model_spec = to_model_spec(f"{name}[{i}]", spec)
        checked.append(spec if isinstance(spec, str) else model_spec)
    return checked
