"""The MoA graph's nodes: layer, proposer, collect_references, aggregator, and its two routers.

Model-calling nodes have a sync and an async form (``invoke`` and ``ainvoke`` both work; the
proposers of a layer run concurrently either way); the others are pure and run inline. The
algorithm they apply lives in `moa_graph.layers`, `moa_graph.aggregation`,
`moa_graph.references`, `moa_graph.calls` and `moa_graph.review`; `moa_graph.graph` wires
the nodes.
"""

import asyncio
import contextlib
import functools
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_config
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.errors import NodeError
from langgraph.types import Command, Overwrite, Send, interrupt

from moa_graph.aggregation import (
    AggregationSettings,
    AggregatorRequest,
    Candidate,
    Outcome,
    Steps,
    aggregate,
    agreed_answer,
    candidate_reply,
)
from moa_graph.budget import check_max_calls, most_calls
from moa_graph.calls import (
    CallPolicy,
    ProposerTask,
    call_model,
    call_model_sync,
    call_proposer,
    call_proposer_sync,
)
from moa_graph.context import MoAContext, check_layer_sizes
from moa_graph.errors import AggregatorError, MoAConfigError
from moa_graph.layers import (
    aggregator_candidates,
    call_seed,
    check_quorum,
    layer_references,
    mark_selected,
    reused_first_stage,
)
from moa_graph.models import CallSlot, ModelSource, with_call_settings
from moa_graph.references import inject_references, reference_order, with_system_prompt
from moa_graph.review import parse_decision, review_request
from moa_graph.run_scope import count_call, run_context
from moa_graph.state import Aggregation, MoAState, Proposal, Review
from moa_graph.stragglers import LayerGate, layer_gate
from moa_graph.tool_turns import forces_a_call, render_tool_turns
from moa_graph.trust import RequestPolicy
from moa_graph.usage import total_usage, usage_of

Update = dict[str, Any]


class ProposerFailed(Exception):
    """A proposer call ended without an answer; `MoANodes.failed_proposer` writes `record`."""

    def __init__(self, record: Proposal):
        super().__init__(record["error"] or record["status"])
        self.record = record


class MoANodes:
    """The node functions of one MoA graph, bound to where its models come from.

    Args:
        models: Model instances given to `build_moa_graph`, or the context's specs.
        guard: The operator's policy for a run's context when it comes from a network, or
            None to trust it: every node gets its context through
            `moa_graph.run_scope.run_context`, which admits it once per run, and every model
            call is counted against the run's budget (`moa_graph.run_scope.count_call`).
        uncached_failures: Raise `ProposerFailed` for a proposer call that did not answer, so
            that the node cache keeps only answers; `failed_proposer`, the node's error
            handler, writes the record instead.
    """

    def __init__(
        self,
        models: ModelSource,
        guard: RequestPolicy | None = None,
        *,
        uncached_failures: bool = False,
    ):
        self.models = models
        self.guard = guard
        self.uncached_failures = uncached_failures

    async def alayer(self, state: MoAState) -> Update:
        """`layer` under ``ainvoke``: on the event loop when every model the run calls exists.

        Creating a model may start the embedded server, which blocks, so a run with a model
        not made yet runs `layer` in a worker thread (``asyncio.to_thread`` keeps the run's
        context). The hop costs about 1 ms of CPU a run (benchmarks/cpu_per_run.py).
        """
        if self.models.made(self._context()):
            return self.layer(state)
        return await asyncio.to_thread(self.layer, state)

    def layer(self, state: MoAState) -> Update:
        """Start the next MoA layer; at the start of a turn, check every model first."""
        ctx = self._context()
        if not state.get("messages"):
            raise MoAConfigError("messages is empty: send at least one user message")
        turn = state["messages"][-1].id or ""
        if state.get("turn") == turn:
            if state["layer"] == 0:  # a cascade escalates: reuse its answers where they fit
                return {"layer": 1, "proposals": self._reused(ctx, state["proposals"])}
            return {"layer": state["layer"] + 1}
        # A new turn: create every model now, so bad settings fail before any call.
        given = self.models.instance_layers
        if given is not None and given not in (1, ctx.rounds):
            raise MoAConfigError(
                f"build_moa_graph got {given} proposer lists but rounds is "
                f"{ctx.rounds}: pass one list per round, or a flat list"
            )
        sizes = self.models.check(ctx)
        check_layer_sizes(ctx, sizes)
        first_stage = len(self.models.proposers(ctx, 0))
        check_max_calls(
            ctx.max_calls,  # with a guard, bounded by the operator's budget (`run_context`)
            most_calls(ctx.aggregator_mode, ctx.window_size, sizes, first_stage=first_stage),
        )
        if ctx.review and get_config()["configurable"].get(CONFIG_KEY_CHECKPOINTER) is None:
            raise MoAConfigError(
                "review=True pauses the run for a person, which needs a checkpointer: compile "
                "with compile(checkpointer=InMemorySaver()) and pass a thread_id in the config "
                "(langgraph dev and Studio have one)"
            )
        # A cascade asks its first stage as layer 0 (`next_round_or_aggregate` is its gate).
        first = 0 if first_stage else 1
        return {"layer": first, "turn": turn, "proposals": Overwrite([]), "review": None}

    def send_to_proposers(self, state: MoAState) -> list[Send]:
        """Map the conversation (with the previous layer's references) to one Send per call."""
        ctx = self._context()
        k = state["layer"]
        # Proposers given no tools see earlier tool calls and results as text.
        messages: list[BaseMessage] = (
            list(state["messages"])
            if ctx.tools and ctx.proposer_tools
            else render_tool_turns(state["messages"])
        )
        if k > 1:
            refs = layer_references(state["proposals"], k - 1)
            order = reference_order(len(refs), shuffle=ctx.shuffle_references, rng=_rng(ctx, k))
            messages = inject_references(
                messages,
                [refs[i] for i in order],
                ctx.references_prompt,
                reference_format=ctx.reference_format,
            )
        gate = uuid.uuid4().hex if ctx.first_k is not None else None
        reused = {p["index"] for p in state["proposals"] if p["layer"] == k}
        sends = []
        for i, call in enumerate(self.models.proposers(ctx, k)):
            if i in reused:
                continue
            seed = call_seed(ctx.seed, k, call.spec_index, call.sample) if call.seeded else None
            task = ProposerTask(
                layer=k, index=i, spec_index=call.spec_index, sample=call.sample, seed=seed,
                model=call.label, messages=messages, gate=gate,
            )  # fmt: skip
            sends.append(Send("proposer", task))
        return sends

    def proposer(self, task: ProposerTask) -> Update:
        """Call one proposer (sync form); a failure becomes a record with its error."""
        ctx, call, branches = self._branch(task)
        model, messages, config = self._proposer_call(task, call)
        with self._gate(ctx, task, branches) as gate:
            record = call_proposer_sync(
                model, task, messages, config, policy=_policy(ctx, call), gate=gate
            )
        return self._written(record)

    async def aproposer(self, task: ProposerTask) -> Update:
        """Call one proposer (async form); a failure becomes a record with its error."""
        ctx, call, branches = self._branch(task)
        model, messages, config = self._proposer_call(task, call)
        with self._gate(ctx, task, branches) as gate:
            record = await call_proposer(
                model, task, messages, config, policy=_policy(ctx, call), gate=gate
            )
        return self._written(record)

    def failed_proposer(self, task: ProposerTask, error: NodeError) -> Command[str]:
        """Write the record of a proposer call that did not answer (the proposer's error handler).

        Only graphs with the proposer node cache have it: LangGraph caches what a node wrote
        but never a node that raised, so a failed call is redone by the next run (a batch's
        ``--retry-failed``) instead of replayed from the cache.
        """
        if isinstance(error.error, ProposerFailed):
            # goto: the branch joins the layer as the proposer's own edge would have
            return Command(update={"proposals": [error.error.record]}, goto="collect_references")
        raise error.error

    def _written(self, record: Proposal) -> Update:
        if self.uncached_failures and record["status"] != "ok":
            raise ProposerFailed(record)
        return {"proposals": [record]}

    def collect_references(self, state: MoAState) -> Update:
        """Join the layer's branches; fail if too few answered; after the last, ask a reviewer."""
        ctx = self._context()
        k = state["layer"]
        if k == 0:  # a cascade's first stage: one answer is enough to go on
            check_quorum(state["proposals"], 0, 1)
            return {}
        check_quorum(
            state["proposals"], k, ctx.min_proposals, every=ctx.on_fewer_proposals == "fail"
        )
        if ctx.review and k == ctx.rounds:
            return {"review": self._ask_reviewer(state, k)}
        return {}

    def next_round_or_aggregate(
        self, state: MoAState
    ) -> Literal["next round", "aggregate", "cascade answers"]:
        """Loop to the next layer until `rounds` layers ran, then go to the aggregator.

        After a cascade's first stage (layer 0): answer from it when enough of its answers
        agree, else escalate to layer 1.
        """
        ctx = self._context()
        if state["layer"] == 0:
            return "cascade answers" if _cascade_choice(state, ctx) else "next round"
        return "next round" if state["layer"] < ctx.rounds else "aggregate"

    def cascade_answer(self, state: MoAState) -> Update:
        """Answer with the cascade's first stage: the answer enough of its calls agreed on."""
        ctx = self._context()
        chosen = _cascade_choice(state, ctx)
        assert chosen is not None  # the gate sent the run here
        aggregation = Aggregation(
            mode="cascade", requested_mode=ctx.aggregator_mode, model=None, chosen=chosen.index,
            fallback=None, judge_text=None, calls=0, seeds=[], usage=None, reviewed=False,
            analysis=None,
        )  # fmt: skip
        proposals = mark_selected(state["proposals"], 0, [chosen.index])
        return {
            "messages": [candidate_reply(chosen)],
            "aggregation": aggregation,
            "proposals": Overwrite(proposals),
        }

    def aggregator(self, state: MoAState) -> Update:
        """Turn the last layer's proposals into the answer (sync form)."""
        ctx, agg, steps = self._aggregation(state)
        seeds: list[int | None] = []

        def call(request: AggregatorRequest) -> AIMessage:
            model, messages = self._aggregator_call(ctx, agg(), request, seeds)
            return cast(AIMessage, call_model_sync(model, messages, {}, _policy(ctx, agg())))

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
            return cast(AIMessage, await call_model(model, messages, {}, _policy(ctx, agg())))

        try:
            request = next(steps)
            while True:
                request = steps.send(await call(request))
        except StopIteration as done:
            return self._answer(state, ctx, done.value, seeds)
        except Exception as exc:
            raise self._aggregator_error(ctx, exc, state) from exc

    def _context(self) -> MoAContext:
        """The run's settings, admitted by the operator's guard when there is one.

        Every node and router gets its context here (`moa_graph.run_scope.run_context`), so a
        node that LangGraph's API starts directly still runs on an admitted context.
        """
        return run_context(self.guard)

    def _reused(self, ctx: MoAContext, proposals: list[Proposal]) -> list[Proposal]:
        """Layer-1 records that repeat the first stage's answers (`reused_first_stage`).

        None with proposer instances (their shapes are unknown) or with ``first_k`` (its cut-off
        counts the layer's own calls).
        """
        if self.models.instance_layers is not None or ctx.first_k is not None:
            return []
        return reused_first_stage(proposals, ctx.proposer_specs(0), ctx.proposer_specs(1))

    def _branch(self, task: ProposerTask) -> tuple[MoAContext, CallSlot, int]:
        """The context, this branch's model call, and how many calls its layer has."""
        ctx = self._context()
        calls = self.models.proposers(ctx, task["layer"])
        return ctx, calls[task["index"]], len(calls)

    def _proposer_call(
        self, task: ProposerTask, call: CallSlot
    ) -> tuple[Runnable[Any, Any], list[BaseMessage], RunnableConfig]:
        count_call()  # the run's budget counts the calls it makes, whatever its Sends say
        k, i = task["layer"], task["index"]
        where = f"layer {k}" + (f", sample {task['sample'] + 1}" if call.samples > 1 else "")
        config = RunnableConfig(
            run_name=f"{call.label} ({where})",
            tags=["nostream", "proposer", f"layer:{k}"],
            metadata={
                "moa_layer": k, "moa_proposer_index": i, "moa_model": call.label,
                "moa_sample": task["sample"], "moa_seed": task["seed"],
            },
        )  # fmt: skip
        model: Runnable[Any, Any] = call.model
        ctx = self._context()
        if ctx.tools and ctx.proposer_tools:
            model = _with_tools(call.model, ctx)
        model = model if task["seed"] is None else model.bind(seed=task["seed"])
        return model, with_system_prompt(task["messages"], call.system_prompt), config

    @contextlib.contextmanager
    def _gate(
        self, ctx: MoAContext, task: ProposerTask, branches: int
    ) -> Iterator[LayerGate | None]:
        """The layer's straggler cut-off while this branch runs, or None without first_k."""
        if task["gate"] is None or ctx.first_k is None:
            yield None
            return
        with layer_gate(task["gate"], ctx.first_k, ctx.straggler_grace_s, branches) as gate:
            yield gate

    def _aggregator_error(self, ctx: MoAContext, error: Exception, state: MoAState) -> Exception:
        if isinstance(error, AggregatorError | MoAConfigError):
            return error
        reason = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        return AggregatorError(self.models.aggregator_label(ctx), reason, state["proposals"])

    def _ask_reviewer(self, state: MoAState, layer: int) -> Review:
        """Pause with `interrupt` until the resume value is a valid decision."""
        answered = [
            p["index"] for p in state["proposals"] if p["layer"] == layer and p["status"] == "ok"
        ]
        error = None
        while True:
            decision = interrupt(review_request(state["proposals"], layer, error))
            result = parse_decision(decision, answered)
            if not isinstance(result, str):
                return result
            error = result  # asked again: each interrupt() in a node has its own resume value

    def _aggregation(self, state: MoAState) -> tuple[MoAContext, Callable[[], CallSlot], Steps]:
        """Return the context, the aggregator and the steps of the aggregator's mode.

        The aggregator is created at its first call: a vote may need none.
        """
        ctx = self._context()
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
        )
        candidates = aggregator_candidates(state["proposals"], state["layer"], state.get("review"))
        rng = _rng(ctx, ctx.rounds + 1)
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
            model = _with_tools(agg.model, ctx)
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
        aggregation = Aggregation(
            mode=outcome.mode,
            requested_mode=ctx.aggregator_mode,
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
        return {
            "messages": [outcome.answer],
            "aggregation": aggregation,
            "proposals": Overwrite(proposals),
        }


def _cascade_choice(state: MoAState, ctx: MoAContext) -> Candidate | None:
    """The first stage's agreed answer, or None when too few of its answers agree."""
    first_stage = aggregator_candidates(state["proposals"], 0, None)
    return agreed_answer(first_stage, ctx.answer_pattern, ctx.cascade_agreement)


def _rng(ctx: MoAContext, layer: int) -> random.Random:
    """The shuffle order's source: fixed by ``MoAContext.seed``, else random."""
    return random.Random(None if ctx.seed is None else call_seed(ctx.seed, layer, -1, 0))


def _with_tools(model: BaseChatModel, ctx: MoAContext) -> Runnable[Any, Any]:
    """Return `model` with the context's tools and tool choice bound."""
    assert ctx.tools is not None
    choice: dict[str, Any] = {} if ctx.tool_choice is None else {"tool_choice": ctx.tool_choice}
    return model.bind_tools(ctx.tools, **choice)


def _policy(ctx: MoAContext, call: CallSlot) -> CallPolicy:
    return CallPolicy(timeout_s=call.timeout_s, retries=ctx.retries, admission=call.admission)
