"""The MoA graph's wiring: a layer node fans out to proposers via `Send`, loops, then aggregates.

    START -> layer -(Send per proposer call)-> proposer -> collect_references
    collect_references -("next round")-> layer
    collect_references -("aggregate")-> aggregator -> END
    collect_references -("cascade answers")-> cascade_answer -> END

With ``MoAContext.cascade`` the first pass of the loop is the cascade's first stage: when
enough of its answers agree, ``cascade_answer`` answers with them; otherwise the run goes on
to layer 1 ("next round"). The proposer side's nodes are in `moa_graph.nodes`, the answer
nodes (`ANSWER_NODES`) in `moa_graph.answer_nodes`; the algorithm behind them in
`moa_graph.layers` and the modules it names.
"""

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.graph import START, StateGraph
from langgraph.types import CachePolicy

from moa_graph.answer_nodes import AnswerNodes
from moa_graph.call_plan import ModelSource
from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.nodes import MoANodes
from moa_graph.state import InputState, MoAState, OutputState, ProposerTask
from moa_graph.trust import RequestPolicy

Proposers = Sequence[BaseChatModel] | Sequence[Sequence[BaseChatModel]]

ANSWER_NODES = frozenset({"aggregator", "cascade_answer"})
"""The nodes that write a run's answer (the last message): the faces read a run's answer from
these and nothing else (`moa_graph.answer_stream`, `moa_graph.run_summary`)."""


def build_moa_graph(
    *,
    proposers: Proposers | None = None,
    aggregator: BaseChatModel | None = None,
    proposer_cache: CachePolicy[Any] | None = None,
    context_guard: RequestPolicy | None = None,
) -> StateGraph[MoAState, MoAContext, InputState, OutputState]:
    """Build the Mixture-of-Agents graph, uncompiled.

    Compile it yourself so that you choose the checkpointer, cache and name, e.g.
    ``build_moa_graph().compile(checkpointer=InMemorySaver(), name="moa")``. Run it with
    ``graph.invoke(...)`` or ``await graph.ainvoke(...)`` (``stream``/``astream`` too); the
    proposers of a layer run concurrently either way.

    Input is ``{"messages": [...]}``. The output state's ``messages`` ends with the answer as
    an `AIMessage`; ``proposals`` holds one `moa_graph.state.Proposal` per proposer call of
    this turn, and ``aggregation`` says how the answer was produced
    (`moa_graph.state.Aggregation`). With ``stream_mode="messages"`` only the answer streams.

    Args:
        proposers: Chat model instances to use instead of ``MoAContext.proposers``: a flat list
            (the same proposers in every layer) or one list per layer (as many lists as
            ``rounds``). The context's ``temperature``, ``max_tokens`` and ``seed`` do not
            apply to them.
        aggregator: A chat model instance to use instead of ``MoAContext.aggregator``.
        proposer_cache: LangGraph's node cache for the proposer node, effective when you
            compile with ``cache=`` (e.g. ``SqliteCache(path=...)``): a proposer call that
            answered is then not made again, even after a kill; one that failed, timed out or
            was cut off is never cached, so the next run makes it again. Use
            `proposer_cache_policy` for a key that keeps samples and seeds apart; with
            ``MoAContext.seed=None`` every run draws new seeds, so nothing is reused.

        context_guard: For a graph a server runs on a caller's context (langgraph dev, a
            deployment): the operator's `moa_graph.trust.RequestPolicy`. Every node admits
            the run's context through it (once per run, `moa_graph.run_scope.run_context`),
            so a run whose context names other models, endpoint-changing ``model_kwargs``,
            fields outside the policy's allowlist or more than its budgets is refused before
            any model is created, however LangGraph's API started it; and every model call
            counts against the run's ``max_calls`` budget. None (default): the context is
            trusted, as from your own Python code. `moa_graph.trust.guard_from_environment`
            reads it from ``MOA_SERVE_*``.

    Returns:
        A `StateGraph` with nodes ``layer``, ``proposer``, ``collect_references``,
        ``aggregator`` and ``cascade_answer`` (`ANSWER_NODES` write the answer) and
        ``MoAContext`` as its context schema.

    Raises:
        MoAConfigError: `proposers` or `aggregator` is not a chat model, or a list is empty.
            Settings errors of the context are raised when the run starts, before any call.
    """
    models = ModelSource(_check_instances(proposers, aggregator), aggregator)
    nodes = MoANodes(models, guard=context_guard, uncached_failures=proposer_cache is not None)
    answers = AnswerNodes(models, guard=context_guard)
    builder = StateGraph(
        MoAState, context_schema=MoAContext, input_schema=InputState, output_schema=OutputState
    )
    builder.add_node("layer", _Node(nodes.layer, nodes.alayer, name="layer"))
    builder.add_node(
        "proposer",
        _Node(nodes.proposer, nodes.aproposer, name="proposer"),
        cache_policy=proposer_cache,
        # With the cache on, a failed call raises (LangGraph caches no node that raised) and
        # this handler writes its record: the cache keeps only answers.
        # (LangGraph's stubs list no (input, error) node shape; it passes the error by name)
        error_handler=cast(Any, nodes.failed_proposer) if proposer_cache is not None else None,
    )
    builder.add_node("collect_references", _inline(nodes.collect_references))
    builder.add_node(
        "aggregator", _Node(answers.aggregator, answers.aaggregator, name="aggregator")
    )
    builder.add_node("cascade_answer", _inline(answers.cascade_answer))
    builder.add_edge(START, "layer")
    builder.add_conditional_edges("layer", _inline(nodes.send_to_proposers), ["proposer"])
    builder.add_edge("proposer", "collect_references")
    builder.add_conditional_edges(
        "collect_references",
        _inline(nodes.next_round_or_aggregate),
        {"next round": "layer", "aggregate": "aggregator", "cascade answers": "cascade_answer"},
    )
    builder.set_finish_point("aggregator")
    builder.set_finish_point("cascade_answer")
    return builder


def proposer_cache_policy() -> CachePolicy[Any]:
    """Return the cache policy of the proposer node: one entry per distinct call.

    The key is the call's layer, position, sample, seed, model label and prompt text (message
    types and texts, not their random ids). A proposer's settings reach it through the seed
    only when the caller derives seeds from them, as ``moa-graph batch`` does.
    """
    return CachePolicy(key_func=proposer_cache_key)


def proposer_cache_key(task: ProposerTask) -> str:
    """Return the cache key of one proposer call (see `proposer_cache_policy`)."""
    if "layer" not in task:  # get_graph() prepares its tasks with a placeholder input
        return ""
    prompt = [(m.type, m.text) for m in task["messages"]]
    fields = [task["layer"], task["index"], task["sample"], task["seed"], task["model"], prompt]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def _inline(func: Callable[[Any], Any]) -> "_Node":
    """Wrap a pure node or router so that ``ainvoke`` runs it on the event loop.

    A plain sync function would be sent to a worker thread on every call under ``ainvoke``
    (docs/notes.md, "Batch": the fan-out router's thread hop limited throughput).
    """
    return _Node(func, name=func.__name__)


class _Node(Runnable[Any, Any]):
    """A node or router with a sync and an async form, run as LangGraph runs a plain function.

    LangGraph traces each node itself; `RunnableLambda` would add a run of its own inside it
    and inspect its function's signature on every call (issue 21's profile: about 12% of a
    run's CPU). `afunc` None runs `func` on the event loop under ``ainvoke``.
    """

    def __init__(
        self,
        func: Callable[[Any], Any],
        afunc: Callable[[Any], Awaitable[Any]] | None = None,
        *,
        name: str,
    ):
        self.func, self.afunc, self.name = func, afunc, name

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        token = var_child_runnable_config.set(config)  # get_runtime() and the model calls
        try:
            return self.func(input)
        finally:
            var_child_runnable_config.reset(token)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        token = var_child_runnable_config.set(config)
        try:
            return self.func(input) if self.afunc is None else await self.afunc(input)
        finally:
            var_child_runnable_config.reset(token)


def _check_instances(
    proposers: Proposers | None, aggregator: BaseChatModel | None
) -> list[list[BaseChatModel]] | None:
    if aggregator is not None and not isinstance(aggregator, BaseChatModel):
        raise MoAConfigError(
            f"aggregator must be a LangChain chat model, got {type(aggregator).__name__}"
        )
    if proposers is None:
        return None
    if not proposers:
        raise MoAConfigError("proposers is empty: pass chat models, or None to use the context")
    per_layer: list[list[BaseChatModel]]
    if all(isinstance(p, BaseChatModel) for p in proposers):
        per_layer = [cast(list[BaseChatModel], list(proposers))]
    elif all(isinstance(p, Sequence) for p in proposers):
        per_layer = [list(cast(Sequence[BaseChatModel], p)) for p in proposers]
    else:
        raise MoAConfigError(
            "proposers must be a list of chat models, or a list with one such list per layer"
        )
    for k, models in enumerate(per_layer, start=1):
        if not models or not all(isinstance(m, BaseChatModel) for m in models):
            raise MoAConfigError(
                f"proposers layer {k} must be a non-empty list of LangChain chat models"
            )
    return per_layer
