"""A run's plan of model calls: which model makes each call of a layer, with its own settings.

`ModelSource` answers, for one run's context, what each proposer call of a layer is (a
`CallSlot`: the model, its label, sample, seed policy, timeout and admission) and what the
aggregator is: instances given to `moa_graph.build_moa_graph`, else models made from the
context's specs (`moa_graph.models.load_chat_model`). A proposer whose credentials are missing
under ``skip_unavailable`` is an `UnavailableModel`, which fails at once and sends nothing.
"""

from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

from moa_graph.context import MoAContext
from moa_graph.errors import MissingCredentials
from moa_graph.limits import Admission
from moa_graph.models import accepts_seed, call_admission, is_made, load_chat_model, model_label
from moa_graph.spec import ModelSpec
from moa_graph.state import FIRST_STAGE


@dataclass(frozen=True)
class CallSlot:
    """One call position of a layer (or the aggregator): the model and its own settings.

    Attributes:
        label: Name for records and traces.
        model: The chat model.
        spec_index: 0-based position of its spec (or instance) in the layer's list.
        sample: 0-based sample of that spec.
        samples: The spec's ``n``.
        seeded: True when a per-call seed is sent (spec-built models whose provider takes one).
        timeout_s: Seconds one attempt may take once admitted, or None for no limit.
        system_prompt: Text put first in the system message, or None.
        admission: Rate limits and server capacity the call waits for, or None.
    """

    label: str
    model: BaseChatModel
    spec_index: int = 0
    sample: int = 0
    samples: int = 1
    seeded: bool = False
    timeout_s: float | None = None
    system_prompt: str | None = None
    admission: Admission | None = None


class ModelUnavailable(RuntimeError):
    """A proposer left out because its credentials are missing (``skip_unavailable``)."""


class UnavailableModel(BaseChatModel):
    """Stands in for a proposer whose credentials are missing: every call fails at once.

    Its record says why (``ModelUnavailable: ...``); nothing is sent anywhere.
    """

    reason: str

    @property
    def _llm_type(self) -> str:
        return "unavailable"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise ModelUnavailable(self.reason)


class ModelSource:
    """Where a run's models come from: instances given to `build_moa_graph`, else the context.

    Args:
        proposers: One list of chat model instances per layer (a single list serves every
            layer), or None to build proposers from ``MoAContext`` specs.
        aggregator: A chat model instance, or None to build it from ``MoAContext.aggregator``.
    """

    def __init__(
        self, proposers: list[list[BaseChatModel]] | None, aggregator: BaseChatModel | None
    ):
        # Made once: copying per call would also redo langchain's cached serialization per call.
        self._instances = (
            None if proposers is None
            else [[(model_label(m), _whole_answers(m)) for m in models] for models in proposers]
        )  # fmt: skip
        self._aggregator = aggregator

    @property
    def instance_layers(self) -> int | None:
        """How many proposer lists were given as instances, or None for specs."""
        return None if self._instances is None else len(self._instances)

    def proposers(self, ctx: MoAContext, layer: int) -> list[CallSlot]:
        """Return one entry per proposer call of `layer` (a spec's samples in a row).

        `FIRST_STAGE` is the cascade's first stage (``MoAContext.cascade``), always built from
        specs; layers 1 to ``rounds`` are the MoA's.

        Raises:
            MoAConfigError, LocalModelError: As `load_chat_model`.
        """
        if self._instances is not None and layer != FIRST_STAGE:  # the first stage is specs
            models = self._instances[0 if len(self._instances) == 1 else layer - 1]
            return [
                CallSlot(label, model, spec_index=i, timeout_s=ctx.proposer_timeout_s)
                for i, (label, model) in enumerate(models)
            ]
        calls = []
        for i, spec in enumerate(ctx.proposer_specs(layer)):
            try:
                model = _from_spec(spec, ctx, streaming=False)
            except MissingCredentials as exc:
                if not ctx.skip_unavailable:
                    raise
                model = UnavailableModel(reason=str(exc))
            admission = _admission(spec, ctx)
            for sample in range(spec.n):
                calls.append(
                    CallSlot(
                        spec.name, model, spec_index=i, sample=sample, samples=spec.n,
                        seeded=accepts_seed(model),
                        timeout_s=spec.timeout_s or ctx.proposer_timeout_s,
                        system_prompt=spec.system_prompt, admission=admission,
                    )
                )  # fmt: skip
        return calls

    def create_all(self, ctx: MoAContext) -> list[int]:
        """Create every model a run of `ctx` calls, so bad settings fail before any call.

        The aggregator of a ``vote`` is left out: a vote calls it only as a fallback.

        Returns:
            Proposer calls per layer (samples counted).

        Raises:
            MoAConfigError, LocalModelError: As `load_chat_model`.
        """
        sizes = [len(self.proposers(ctx, k)) for k in range(1, ctx.rounds + 1)]
        if ctx.aggregator_mode != "vote":
            self.aggregator(ctx)
        return sizes

    def made(self, ctx: MoAContext) -> bool:
        """Return True when every model a run of `ctx` calls exists already.

        Then `create_all` cannot block (no embedded server to start), so the graph may run it on
        the event loop.
        """
        # Each distinct list once: bounded by what the context holds, never by its rounds
        # (a guarded run's rounds are checked after this).
        lists = len(ctx.layer_proposers) if ctx.layer_proposers else 1
        specs = ctx.proposer_specs(FIRST_STAGE)
        if self._instances is None:
            specs += [spec for layer in range(1, lists + 1) for spec in ctx.proposer_specs(layer)]
        wanted = [(spec, False) for spec in specs]
        if self._aggregator is None and ctx.aggregator_mode != "vote":
            wanted.append((ctx.aggregator_spec(), True))
        return all(
            is_made(spec.model, **_settings(spec, ctx), streaming=streaming)
            for spec, streaming in wanted
        )

    def aggregator_label(self, ctx: MoAContext) -> str:
        """Return the aggregator's name for records, without creating the model."""
        if self._aggregator is not None:
            return model_label(self._aggregator)
        return ctx.aggregator_spec().name

    def aggregator(self, ctx: MoAContext) -> CallSlot:
        """Return the aggregator (its tokens stream when the graph streams messages).

        Raises:
            MoAConfigError, LocalModelError: As `load_chat_model`.
        """
        if self._aggregator is not None:
            return CallSlot(model_label(self._aggregator), self._aggregator)
        spec = ctx.aggregator_spec()
        model = _from_spec(spec, ctx, streaming=True)
        return CallSlot(
            spec.name, model, seeded=accepts_seed(model), timeout_s=spec.timeout_s,
            system_prompt=spec.system_prompt, admission=_admission(spec, ctx),
        )  # fmt: skip


def _from_spec(spec: ModelSpec, ctx: MoAContext, *, streaming: bool) -> BaseChatModel:
    return load_chat_model(spec.model, **_settings(spec, ctx), streaming=streaming)


def _settings(spec: ModelSpec, ctx: MoAContext) -> dict[str, Any]:
    """The arguments of `load_chat_model` a spec takes from itself, else from the context."""
    return {
        "temperature": ctx.temperature if spec.temperature is None else spec.temperature,
        "max_tokens": spec.max_tokens or ctx.max_tokens,
        "model_kwargs": spec.model_kwargs,
    }


def _admission(spec: ModelSpec, ctx: MoAContext) -> Admission | None:
    return call_admission(
        spec.model, rpm=ctx.rpm, tpm=ctx.tpm, max_tokens=spec.max_tokens or ctx.max_tokens
    )


def _whole_answers(model: BaseChatModel) -> BaseChatModel:
    # Whole answers with usage, even while the graph streams the aggregator's tokens.
    return model.model_copy(update={"disable_streaming": True})
