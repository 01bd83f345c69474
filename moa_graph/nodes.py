"""The MoA graph's proposer side: ``layer``, ``proposer``, ``collect_references``, two routers.

``layer`` starts a layer (at the start of a turn it creates every model and checks the run's
budget), ``send_to_proposers`` fans out one `Send` per proposer call, ``proposer`` makes one
call, ``collect_references`` joins the layer (quorum, review) and ``next_round_or_aggregate``
loops, escalates a cascade or goes to an answer node (`moa_graph.answer_nodes`). ``layer`` and
``proposer`` have a sync and an async form (``invoke`` and ``ainvoke`` both work; the proposers
of a layer run concurrently either way); the others are pure and run inline. The algorithm
they apply lives in `moa_graph.layers`, `moa_graph.references`, `moa_graph.calls` and
`moa_graph.review`; `moa_graph.graph` wires the nodes.
"""

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_config
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.errors import NodeError
from langgraph.types import Command, Overwrite, Send, interrupt

from moa_graph.budget import check_max_calls, most_calls
from moa_graph.call_plan import CallSlot, ModelSource
from moa_graph.calls import CallPolicy, call_proposer, call_proposer_sync
from moa_graph.context import MoAContext, check_layer_sizes
from moa_graph.errors import MoAConfigError
from moa_graph.layers import (
    call_seed,
    check_quorum,
    first_stage_agreement,
    layer_references,
    reference_rng,
    reused_first_stage,
)
from moa_graph.references import inject_references, reference_order, with_system_prompt
from moa_graph.review import parse_decision, review_request
from moa_graph.run_scope import count_call, hold_until_run_ends, run_context
from moa_graph.state import FIRST_STAGE, MoAState, Proposal, ProposerTask, Review
from moa_graph.stragglers import LayerGate, layer_gate
from moa_graph.tool_turns import bind_run_tools, render_tool_turns
from moa_graph.trust import RequestPolicy

Update = dict[str, Any]


class ProposerFailed(Exception):
    """A proposer call ended without an answer; `MoANodes.failed_proposer` writes `record`."""

    def __init__(self, record: Proposal):
        super().__init__(record["error"] or record["status"])
        self.record = record


class MoANodes:
    """The proposer-side nodes of one MoA graph, bound to where its models come from.

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
            if state["layer"] == FIRST_STAGE:  # a cascade escalates: reuse answers that fit
                return {"layer": 1, "proposals": self._reused(ctx, state["proposals"])}
            return {"layer": state["layer"] + 1}
        # A new turn: create every model now, so bad settings fail before any call.
        given = self.models.instance_layers
        if given is not None and given not in (1, ctx.rounds):
            raise MoAConfigError(
                f"build_moa_graph got {given} proposer lists but rounds is "
                f"{ctx.rounds}: pass one list per round, or a flat list"
            )
        sizes = self.models.create_all(ctx)
        check_layer_sizes(ctx, sizes)
        first_stage = len(self.models.proposers(ctx, FIRST_STAGE))
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
        # A cascade asks its first stage first (`next_round_or_aggregate` is its gate).
        first = FIRST_STAGE if first_stage else 1
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
            rng = reference_rng(ctx.seed, k)
            order = reference_order(len(refs), shuffle=ctx.shuffle_references, rng=rng)
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
                model, task, messages, config, policy=CallPolicy.of(call, ctx.retries), gate=gate
            )
        return self._written(record)

    async def aproposer(self, task: ProposerTask) -> Update:
        """Call one proposer (async form); a failure becomes a record with its error."""
        ctx, call, branches = self._branch(task)
        model, messages, config = self._proposer_call(task, call)
        with self._gate(ctx, task, branches) as gate:
            record = await call_proposer(
                model, task, messages, config, policy=CallPolicy.of(call, ctx.retries), gate=gate
            )
        return self._written(record)

    def failed_proposer(self, task: ProposerTask, error: NodeError) -> Command[str]:
        """Write the record of a proposer call that did not answer (the proposer's error handler).

        Only graphs with the proposer node cache have it: LangGraph caches what a node wrote
        but never a node that raised, so a failed call is redone by the next run (a batch's
        ``--retry-failed``) instead of replayed from the cache.
        """
        if isinstance(error.error, ProposerFailed):
            hold_until_run_ends(error.error)  # LangGraph knows it by id (see there)
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
        if k == FIRST_STAGE:  # a cascade's first stage: one answer is enough to go on
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

        After a cascade's first stage: answer from it when enough of its answers agree, else
        escalate to layer 1.
        """
        ctx = self._context()
        if state["layer"] == FIRST_STAGE:
            agreed = first_stage_agreement(
                state["proposals"], ctx.answer_pattern, ctx.cascade_agreement
            )
            return "cascade answers" if agreed is not None else "next round"
        return "next round" if state["layer"] < ctx.rounds else "aggregate"

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
        return reused_first_stage(proposals, ctx.proposer_specs(FIRST_STAGE), ctx.proposer_specs(1))

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
            model = bind_run_tools(call.model, ctx.tools, ctx.tool_choice)
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
