"""The MoA graph: a layer node fans out to proposers via `Send`, loops, then aggregates.

    START -> layer -(Send per proposer)-> proposer -> collect_references
    collect_references -("next round")-> layer
    collect_references -("aggregate")-> aggregator -> END

The algorithm itself (references, proposer records, quorum) lives in `moa_graph.moa`.
"""

from collections.abc import Sequence
from typing import Literal, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send
from typing_extensions import TypedDict

from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.moa import call_proposer, check_quorum, inject_references, layer_references
from moa_graph.models import load_chat_model, model_label
from moa_graph.state import InputState, MoAState, OutputState

Proposers = Sequence[BaseChatModel] | Sequence[Sequence[BaseChatModel]]


class ProposerTask(TypedDict):
    """What one `Send` hands to the proposer node."""

    layer: int
    index: int
    model: str
    messages: list[AnyMessage]


def build_moa_graph(
    *, proposers: Proposers | None = None, aggregator: BaseChatModel | None = None
) -> StateGraph[MoAState, MoAContext, InputState, OutputState]:
    """Build the Mixture-of-Agents graph, uncompiled.

    Compile it yourself so that you choose the checkpointer, cache and name, e.g.
    ``build_moa_graph().compile(checkpointer=InMemorySaver(), name="moa")``. Run it with
    ``await graph.ainvoke({"messages": [...]}, context=MoAContext(...))``; the model nodes
    are async, so use ``ainvoke``/``astream`` (sync ``invoke`` is not supported).

    Input is ``{"messages": [...]}``. The output state's ``messages`` ends with the
    aggregator's `AIMessage`; ``proposals`` holds one `moa_graph.state.Proposal` per proposer
    call of this turn. With ``stream_mode="messages"`` only the aggregator's tokens stream.

    Args:
        proposers: Chat model instances to use instead of ``MoAContext.proposers``: a flat list
            (the same proposers in every layer) or one list per layer (as many lists as
            ``rounds``). ``temperature`` and ``max_tokens`` of the context do not apply to them.
        aggregator: A chat model instance to use instead of ``MoAContext.aggregator``.

    Returns:
        A `StateGraph` with nodes ``layer``, ``proposer``, ``collect_references`` and
        ``aggregator`` and ``MoAContext`` as its context schema.

    Raises:
        MoAConfigError: `proposers` or `aggregator` is not a chat model, or a list is empty.
            Settings errors of the context are raised when the run starts, before any call.
    """
    per_layer = _check_instances(proposers, aggregator)
    # Made once: copying per call would also redo langchain's cached serialization per call.
    instances = (
        None if per_layer is None
        else [[(model_label(m), _as_proposer(m)) for m in models] for models in per_layer]
    )  # fmt: skip

    def layer_models(ctx: MoAContext, layer: int) -> list[tuple[str, BaseChatModel]]:
        """Return (label, model) for each proposer of a 1-based layer."""
        if instances is not None:
            return instances[0] if len(instances) == 1 else instances[layer - 1]
        return [
            (spec, load_chat_model(spec, temperature=ctx.temperature,
                                   max_tokens=ctx.max_tokens, streaming=False))
            for spec in ctx.proposer_specs(layer)
        ]  # fmt: skip

    def aggregator_model(ctx: MoAContext) -> tuple[str, BaseChatModel]:
        model = aggregator or load_chat_model(
            ctx.aggregator, temperature=ctx.temperature, max_tokens=ctx.max_tokens
        )
        return (ctx.aggregator if aggregator is None else model_label(model)), model

    def layer(state: MoAState, runtime: Runtime[MoAContext]) -> dict[str, object]:
        """Start the next MoA layer; at the start of a turn, check every model first."""
        ctx = _context(runtime)
        if not state.get("messages"):
            raise MoAConfigError("messages is empty: send at least one user message")
        turn = state["messages"][-1].id or ""
        if state.get("turn") == turn:
            return {"layer": state["layer"] + 1}
        # A new turn: create every model now, so bad settings fail before any call.
        if per_layer is not None and len(per_layer) not in (1, ctx.rounds):
            raise MoAConfigError(
                f"build_moa_graph got {len(per_layer)} proposer lists but rounds is "
                f"{ctx.rounds}: pass one list per round, or a flat list"
            )
        for k in range(1, ctx.rounds + 1):
            if len(layer_models(ctx, k)) < ctx.min_proposals:
                raise MoAConfigError(
                    f"min_proposals is {ctx.min_proposals} but layer {k} has fewer proposers"
                )
        aggregator_model(ctx)
        return {"layer": 1, "turn": turn, "proposals": Overwrite([])}

    def send_to_proposers(state: MoAState, runtime: Runtime[MoAContext]) -> list[Send]:
        """Map the conversation (with the previous layer's references) to one Send each."""
        ctx = _context(runtime)
        k = state["layer"]
        messages: list[BaseMessage] = list(state["messages"])
        if k > 1:
            refs = layer_references(state["proposals"], k - 1)
            messages = inject_references(messages, refs, ctx.aggregator_prompt)
        return [
            Send("proposer", ProposerTask(layer=k, index=i, model=label, messages=messages))  # type: ignore[typeddict-item]
            for i, (label, _) in enumerate(layer_models(ctx, k))
        ]

    async def proposer(task: ProposerTask, runtime: Runtime[MoAContext]) -> dict[str, object]:
        """Call one proposer model; a failure becomes a record with its error."""
        ctx = _context(runtime)
        k, i = task["layer"], task["index"]
        label, model = layer_models(ctx, k)[i]
        config = RunnableConfig(
            run_name=f"{label} (layer {k})",
            tags=["nostream", "proposer", f"layer:{k}"],
            metadata={"moa_layer": k, "moa_proposer_index": i, "moa_model": label},
        )
        record = await call_proposer(
            model, task["messages"], config, layer=k, index=i, label=label,
            timeout_s=ctx.proposer_timeout_s,
        )  # fmt: skip
        return {"proposals": [record]}

    async def collect_references(
        state: MoAState, runtime: Runtime[MoAContext]
    ) -> dict[str, object]:
        """Join the layer's branches; fail the run if too few proposers answered."""
        check_quorum(state["proposals"], state["layer"], _context(runtime).min_proposals)
        return {}

    def next_round_or_aggregate(
        state: MoAState, runtime: Runtime[MoAContext]
    ) -> Literal["next round", "aggregate"]:
        """Loop to the next layer until `rounds` layers ran, then go to the aggregator."""
        return "next round" if state["layer"] < _context(runtime).rounds else "aggregate"

    async def aggregator_node(
        state: MoAState, runtime: Runtime[MoAContext]
    ) -> dict[str, list[BaseMessage]]:
        """Synthesize the last layer's references into the final answer."""
        ctx = _context(runtime)
        label, model = aggregator_model(ctx)
        refs = layer_references(state["proposals"], state["layer"])
        messages = inject_references(state["messages"], refs, ctx.aggregator_prompt)
        k = state["layer"] + 1  # the paper counts the aggregator as the last layer
        traced = model.with_config(
            run_name=f"{label} (aggregator)",
            tags=["aggregator", f"layer:{k}"],
            metadata={"moa_layer": k, "moa_model": label},
        )
        answer = await traced.ainvoke(messages)
        if not answer.text.strip():
            raise RuntimeError(f"aggregator {label} returned an empty answer")
        return {"messages": [answer]}

    builder = StateGraph(
        MoAState, context_schema=MoAContext, input_schema=InputState, output_schema=OutputState
    )
    builder.add_node("layer", layer)
    builder.add_node("proposer", proposer)  # type: ignore[call-overload]
    builder.add_node("collect_references", collect_references)
    builder.add_node("aggregator", aggregator_node)
    builder.add_edge(START, "layer")
    builder.add_conditional_edges("layer", send_to_proposers, ["proposer"])
    builder.add_edge("proposer", "collect_references")
    builder.add_conditional_edges(
        "collect_references",
        next_round_or_aggregate,
        {"next round": "layer", "aggregate": "aggregator"},
    )
    builder.set_finish_point("aggregator")
    return builder


def _context(runtime: Runtime[MoAContext]) -> MoAContext:
    # runtime.context is None when the caller passes no context=.
    return runtime.context if runtime.context is not None else MoAContext()


def _as_proposer(model: BaseChatModel) -> BaseChatModel:
    # Whole answers with usage, even while the graph streams the aggregator's tokens.
    return model.model_copy(update={"disable_streaming": True})


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
