"""Example agent: a router that sends hard questions to MoA and easy ones to a single model.

    START -> triage -("easy")-> single_model -> END
             triage -("hard")-> moa (the compiled MoA graph, as a subgraph) -> END

MoA buys better answers with several model calls; a router spends them only where they pay.
The parent state is `MessagesState` plus the chosen route; the MoA subgraph reads and returns
only ``messages``, and the parent's context (a `RouterContext`, which is a `MoAContext`)
reaches it, so Studio shows one settings form for both.

The triage here is a rule: a question is hard when it is long or asks for reasoning. With a
capable model, replace `classify` by an LLM classifier (``model.with_structured_output``); the
embedded 135M model cannot do that job (asked with a few-shot prompt, it labelled every
question EASY).
"""

import re
from dataclasses import dataclass, field
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from moa_graph import MoAContext, build_moa_graph
from moa_graph.models import load_chat_model, model_label
from moa_graph.run_scope import count_call, run_context
from moa_graph.trust import RequestPolicy, guard_from_environment
from moa_graph.validation import DEFAULT_LOCAL_MODEL, check_int, check_model_text

REASONING = re.compile(
    r"\b(why|how|explain|compare|plan|design|prove|analy[sz]e|evaluate|write|derive)\b", re.I
)


@dataclass(kw_only=True)
class RouterContext(MoAContext):
    """`MoAContext` plus the router's own settings (``MOA_SINGLE_MODEL``, ...).

    Raises:
        MoAConfigError: A field is invalid; the message names it.
    """

    single_model: str = field(
        default=DEFAULT_LOCAL_MODEL,
        metadata={"description": "The one model that answers easy questions ('provider:model')."},
    )
    hard_min_words: int = field(
        default=12,
        metadata={
            "description": "A question with at least this many words goes to MoA; shorter ones "
            "go to MoA only when they ask for reasoning (why, how, explain, compare, ...)."
        },
    )

    def _validate(self) -> None:
        super()._validate()
        check_model_text("single_model", self.single_model)
        check_int("hard_min_words", self.hard_min_words, minimum=1)


class RouterState(MessagesState):
    """The conversation, plus the route the last question took."""

    route: Literal["easy", "hard"]


def classify(question: str, hard_min_words: int) -> Literal["easy", "hard"]:
    """Label a question: ``"hard"`` when it is long or asks for reasoning, else ``"easy"``.

    Args:
        question: The user's message text.
        hard_min_words: Questions with at least this many words are hard.
    """
    if len(question.split()) >= hard_min_words or REASONING.search(question):
        return "hard"
    return "easy"


def build_router_agent(
    *,
    moa: CompiledStateGraph | None = None,  # type: ignore[type-arg]
    single_model: BaseChatModel | None = None,
    context_guard: RequestPolicy | None = None,
) -> StateGraph[RouterState, RouterContext, MessagesState, RouterState]:
    """Build the router agent, uncompiled.

    Args:
        moa: The compiled MoA graph to use as the ``moa`` node; default
            ``build_moa_graph().compile(name="moa")`` (models from the context).
        single_model: The model for easy questions; default ``RouterContext.single_model``.
        context_guard: The operator's policy for a context that comes from a network
            (`moa_graph.trust`): every node of the agent and of the MoA subgraph runs on the
            context it admits once per run (`moa_graph.run_scope.run_context`), within one
            budget of model calls; ``single_model`` must be the operator's or allowed. None:
            the context is trusted.

    Returns:
        A `StateGraph` over `RouterState` with `RouterContext` as its context schema. Input is
        ``{"messages": [...]}``; output adds ``route``. Run it with
        ``await agent.ainvoke({"messages": [...]}, context=RouterContext(...))``.
    """

    def settings() -> RouterContext:
        """Return the run's settings: with a guard, admitted once per run (`run_context`).

        ``single_model`` must then be the operator's or an allowed model.
        """
        ctx = run_context(context_guard, RouterContext)
        if context_guard is not None:
            context_guard.check_model_text(
                "context.single_model", ctx.single_model, [RouterContext().single_model]
            )
        return ctx

    def answering_model(ctx: RouterContext) -> tuple[str, BaseChatModel]:
        if single_model is not None:
            return model_label(single_model), single_model
        model = load_chat_model(
            ctx.single_model, temperature=ctx.temperature, max_tokens=ctx.max_tokens
        )
        return ctx.single_model, model

    def triage(state: RouterState) -> dict[str, str]:
        """Label the last user message easy or hard; for easy ones, create the model now.

        A sync node runs in a worker thread, so creating the model (and starting the embedded
        server) here keeps blocking work off the event loop, as `langgraph dev` requires.
        """
        ctx = settings()
        route = classify(state["messages"][-1].text, ctx.hard_min_words)
        if route == "easy":
            answering_model(ctx)  # cached by load_chat_model for answer_alone
        return {"route": route}

    def route(state: RouterState) -> Literal["easy", "hard"]:
        """Send easy questions to one model and hard ones to MoA."""
        return state["route"]

    async def answer_alone(state: RouterState) -> dict[str, object]:
        """Answer with the single model (one call of the run's budget)."""
        label, model = answering_model(settings())
        count_call()
        answer = await model.ainvoke(
            state["messages"], {"run_name": f"{label} (single model)", "tags": ["single_model"]}
        )
        return {"messages": [answer]}

    builder = StateGraph(RouterState, context_schema=RouterContext, input_schema=MessagesState)
    builder.add_node("triage", triage)
    builder.add_node("single_model", answer_alone)
    builder.add_node("moa", moa or build_moa_graph(context_guard=context_guard).compile(name="moa"))
    builder.add_edge(START, "triage")
    builder.add_conditional_edges("triage", route, {"easy": "single_model", "hard": "moa"})
    builder.add_edge("single_model", END)
    builder.add_edge("moa", END)
    return builder


graph = build_router_agent(context_guard=guard_from_environment()).compile(name="router_agent")
"""What `langgraph dev` loads (compiled without a checkpointer, as it requires)."""
