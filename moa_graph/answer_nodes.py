"""The graph's answer nodes: ``aggregator`` and ``cascade_answer``, and the aggregation record.

``aggregator`` turns the last layer's proposals into the answer with the context's mode
(`moa_graph.aggregation`: synthesize, select, vote, sequential, analyze), in a sync and an
async form; ``cascade_answer`` answers with what a cascade's first stage agreed on. Both write
the answer message, the `moa_graph.state.Aggregation` record (`aggregation_record`, its one
constructor) and the proposals' ``selected`` marks. `moa_graph.graph.ANSWER_NODES` names them;
the proposer side of the graph is `moa_graph.nodes`.
"""

import functools
import warnings
from collections.abc import Callable
from typing import Any, cast

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable
from langgraph.types import Overwrite

from moa_graph.aggregation import (
    AggregationSettings,
    AggregatorRequest,
    AggregatorSteps,
    Outcome,
    aggregate,
    candidate_reply,
)
from moa_graph.analysis import ANALYSIS_SCHEMA
from moa_graph.call_plan import CallSlot, ModelSource
from moa_graph.calls import CallPolicy, call_model, call_model_sync
from moa_graph.context import MoAContext
from moa_graph.errors import AggregatorError, DegradedAnswer, MoAConfigError
from moa_graph.layers import (
    aggregator_candidates,
    call_seed,
    first_stage_agreement,
    mark_selected,
    reference_rng,
)
from moa_graph.models import with_call_settings
from moa_graph.references import with_system_prompt
from moa_graph.run_scope import count_call, run_context
from moa_graph.run_summary import panel_status, source_layer
from moa_graph.state import FIRST_STAGE, Aggregation, MoAState, Proposal
from moa_graph.structured import check_fits
from moa_graph.tool_turns import bind_run_tools, forces_a_call, render_tool_turns
from moa_graph.trust import RequestPolicy
from moa_graph.usage import total_usage, usage_of

Update = dict[str, Any]


def aggregation_record(ctx: MoAContext, mode: str, **fields: Any) -> Aggregation:
    """Return the `Aggregation` record of a turn: `mode`, and `fields` over the defaults.

    The defaults describe no aggregator call: no model, no choice, no fallback, no seeds, no
    usage, not reviewed, no analysis.
    """
    record = Aggregation(
        mode=mode, requested_mode=ctx.aggregator_mode, model=None, chosen=None, fallback=None,
        judge_text=None, calls=0, seeds=[], usage=None, reviewed=False, analysis=None,
    )  # fmt: skip
    return cast(Aggregation, {**record, **fields})


class AnswerNodes:
    """The answer nodes of one MoA graph, bound to where its models come from.

    Args:
        models: Model instances given to `build_moa_graph`, or the context's specs.
        guard: The operator's policy for a run's context (`moa_graph.run_scope.run_context`),
            or None to trust it.
    """

    def __init__(self, models: ModelSource, guard: RequestPolicy | None = None):
        self.models = models
        self.guard = guard

    def cascade_answer(self, state: MoAState) -> Update:
        """Answer with the cascade's first stage: the answer enough of its calls agreed on."""
        ctx = run_context(self.guard)
        chosen = first_stage_agreement(
            state["proposals"], ctx.answer_pattern, ctx.cascade_agreement
        )
        assert chosen is not None  # the gate sent the run here
        proposals = mark_selected(state["proposals"], FIRST_STAGE, [chosen.index])
        _warn_if_degraded(proposals)
        return {
            "messages": [candidate_reply(chosen)],
            "aggregation": aggregation_record(ctx, "cascade", chosen=chosen.index),
            "proposals": Overwrite(proposals),
        }

    def aggregator(self, state: MoAState) -> Update:
        """Turn the last layer's proposals into the answer (sync form)."""
        ctx, agg, steps = self._aggregation(state)
        seeds: list[int | None] = []

        def call(request: AggregatorRequest) -> AIMessage:
            model, messages = self._aggregator_call(ctx, agg(), request, seeds)
            policy = CallPolicy.of(agg(), ctx.retries)
            return cast(AIMessage, call_model_sync(model, messages, {}, policy))

        try:
            request = next(steps)
            while True:
                request = steps.send(call(request))
        except StopIteration as done:
            return self._answer(state, ctx, done.value, seeds)
        except Exception as exc:
            raise self._aggregator_error(ctx, exc, state) from exc

    async def aaggregator(self, state: MoAState) -> Update:
        """Turn the last layer's proposals into the answer (async form)."""
        ctx, agg, steps = self._aggregation(state)
        seeds: list[int | None] = []

        async def call(request: AggregatorRequest) -> AIMessage:
            model, messages = self._aggregator_call(ctx, agg(), request, seeds)
            policy = CallPolicy.of(agg(), ctx.retries)
            return cast(AIMessage, await call_model(model, messages, {}, policy))

        try:
            request = next(steps)
            while True:
                request = steps.send(await call(request))
        except StopIteration as done:
            return self._answer(state, ctx, done.value, seeds)
        except Exception as exc:
            raise self._aggregator_error(ctx, exc, state) from exc

    def _aggregation(
        self, state: MoAState
    ) -> tuple[MoAContext, Callable[[], CallSlot], AggregatorSteps]:
        """Return the context, the aggregator and the steps of the aggregator's mode.

        The aggregator is created at its first call: a vote may need none.
        """
        ctx = run_context(self.guard)
        settings = AggregationSettings(
            mode=ctx.aggregator_mode,
            prompt=ctx.aggregator_prompt,
            reference_format=ctx.reference_format,
            shuffle=ctx.shuffle_references,
            answer_pattern=ctx.answer_pattern,
            window_size=ctx.window_size,
            judge_criteria=ctx.judge_criteria,
            judge_max_tokens=ctx.judge_max_tokens,
            calls_expected=bool(
                ctx.tools and ctx.proposer_tools and forces_a_call(ctx.tool_choice)
            ),
            check_analysis=functools.partial(check_fits, schema=ANALYSIS_SCHEMA),
        )
        candidates = aggregator_candidates(state["proposals"], state["layer"], state.get("review"))
        rng = reference_rng(ctx.seed, ctx.rounds + 1)
        # The aggregator sees tool blocks only when it is given the tools.
        messages = state["messages"] if ctx.tools else render_tool_turns(state["messages"])
        steps = aggregate(settings, messages, candidates, rng)
        return ctx, functools.cache(lambda: self.models.aggregator(ctx)), steps

    def _aggregator_call(
        self,
        ctx: MoAContext,
        agg: CallSlot,
        request: AggregatorRequest,
        seeds: list[int | None],
    ) -> tuple[Runnable[Any, Any], list[BaseMessage]]:
        count_call()
        k = ctx.rounds + 1  # the paper counts the aggregator as the last layer
        seed = call_seed(ctx.seed, k, 0, request.step) if agg.seeded else None
        seeds.append(seed)
        model: Runnable[Any, Any] = agg.model
        if request.tool is not None:  # the mode's own structured call (the judge's analysis)
            name = request.tool["function"]["name"]
            model = agg.model.bind_tools([request.tool], tool_choice=name)
        elif ctx.tools and request.stream:  # the call that writes the answer may act
            model = bind_run_tools(agg.model, ctx.tools, ctx.tool_choice)
        model = with_call_settings(
            model, agg.model, temperature=request.temperature, max_tokens=request.max_tokens
        )
        model = model if seed is None else model.bind(seed=seed)
        step = f", step {request.step + 1}" if request.step else ""
        traced = model.with_config(
            run_name=f"{agg.label} (aggregator{step})",
            tags=["aggregator", f"layer:{k}", *([] if request.stream else ["nostream"])],
            metadata={"moa_layer": k, "moa_model": agg.label, "moa_seed": seed},
        )
        return traced, with_system_prompt(request.messages, agg.system_prompt)

    def _answer(
        self,
        state: MoAState,
        ctx: MoAContext,
        outcome: Outcome,
        seeds: list[int | None],
    ) -> Update:
        label = self.models.aggregator_label(ctx)
        if not outcome.answer.text.strip() and not outcome.answer.tool_calls:
            broken = getattr(outcome.answer, "invalid_tool_calls", [])
            why = (
                f"returned a call of {broken[0].get('name')!r} whose arguments are not valid "
                "JSON (cut off at max_tokens?)"
                if broken
                else "returned an empty answer"
            )
            raise AggregatorError(label, why, state["proposals"])
        aggregation = aggregation_record(
            ctx,
            outcome.mode,
            model=label if outcome.replies else None,
            chosen=outcome.chosen,
            fallback=outcome.fallback,
            judge_text=outcome.judge_text,
            calls=len(outcome.replies),
            seeds=seeds,
            usage=total_usage(usage_of(reply) for reply in outcome.replies),
            reviewed=state.get("review") is not None,
            analysis=outcome.analysis,
        )
        proposals = mark_selected(state["proposals"], state["layer"], outcome.used)
        _warn_if_degraded(proposals)
        return {
            "messages": [outcome.answer],
            "aggregation": aggregation,
            "proposals": Overwrite(proposals),
        }

    def _aggregator_error(self, ctx: MoAContext, error: Exception, state: MoAState) -> Exception:
        if isinstance(error, AggregatorError | MoAConfigError):
            return error
        reason = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        return AggregatorError(self.models.aggregator_label(ctx), reason, state["proposals"])


def _warn_if_degraded(proposals: list[Proposal]) -> None:
    """Warn (`DegradedAnswer`) when the answer's layer had proposers that failed."""
    panel = panel_status(proposals)
    if panel["degraded"]:
        layer = source_layer(proposals)
        failed = [f"{p['model']}: {p['error']}" for p in proposals
                  if p["layer"] == layer and p["status"] in ("failed", "timeout")]  # fmt: skip
        warnings.warn(
            f"the answer was made from {panel['proposals_answered']} of "
            f"{panel['proposals_asked']} proposals; failed: {'; '.join(failed)[:500]}",
            DegradedAnswer,
            stacklevel=2,
        )
