"""Graph state: what callers send, what they get back, and the per-turn bookkeeping."""

import operator
from typing import Annotated, Any, Literal, NotRequired

from langchain_core.messages import AnyMessage, BaseMessage
from langgraph.graph.message import Messages, add_messages
from typing_extensions import TypedDict


def add_message_copies(left: Messages, right: Messages) -> Any:
    """Merge messages like `langgraph.graph.message.add_messages`, without touching the caller's.

    `add_messages` writes a fresh id into every incoming message that has none, in place: the
    caller's own objects would change, and one reused across invocations would carry the id
    of its first use. This reducer hands it copies of such messages instead.
    """
    incoming = right if isinstance(right, list) else [right]
    copies = [
        m.model_copy() if isinstance(m, BaseMessage) and m.id is None else m for m in incoming
    ]
    return add_messages(left, copies)


FIRST_STAGE = 0
"""The layer number of a cascade's first stage (``MoAContext.cascade``): cheap proposer calls
asked before layer 1. Layers of the MoA proper count from 1."""


class Usage(TypedDict):
    """Token counts of one model call, as the provider reported them."""

    input_tokens: int
    output_tokens: int


ProposalStatus = Literal["ok", "failed", "timeout", "cancelled"]


class Proposal(TypedDict):
    """One proposer call of the current turn.

    Attributes:
        layer: The MoA layer the call belongs to: 1 to ``rounds``, or `FIRST_STAGE` (0) for a
            cascade's first stage.
        index: 0-based position of the call within its layer (a spec with ``n`` samples takes
            ``n`` positions).
        model: The spec's label (default its model text, e.g. ``"local:smollm2"``) or, for a
            model instance, its name.
        sample: 0-based sample number of this call within its spec (``ModelSpec.n``).
        seed: The seed sent to the provider, or None when none was sent (model instances, and
            providers whose chat model has no ``seed`` setting).
        status: ``"ok"``, ``"failed"`` (an error or an empty answer), ``"timeout"``, or
            ``"cancelled"`` (cut off by ``first_k`` once the layer had enough answers).
        content: The answer text, or None when the call did not succeed.
        error: None on success, else a short ``"ErrorType: message"`` text.
        usage: Tokens the provider reported, or None when it reported none.
        latency_s: Wall time of the call in seconds, including time queued at the provider.
        selected: True when this proposal's text went on: to the next layer as a reference,
            to the aggregator (synthesize, sequential), or became the answer (select, vote).
        tool_calls: Only when the proposer was given the tools (``proposer_tools``) and called
            some: each call's ``name`` and ``args``; ``content`` then describes them.
        reused_from: Only in layer 1 after a cascade escalated: the ``index`` of the
            first-stage (`FIRST_STAGE`) proposal whose answer this record repeats instead of a new
            call. Its tokens and latency are counted once, on that proposal: here ``usage``
            is None and ``latency_s`` 0.
        cut_off: Only when the call stopped at its ``max_tokens`` (True): its text may be cut
            off; raise ``max_tokens`` if it matters.
    """

    layer: int
    index: int
    model: str
    sample: int
    seed: int | None
    status: ProposalStatus
    content: str | None
    error: str | None
    usage: Usage | None
    latency_s: float
    selected: bool
    tool_calls: NotRequired[list[dict[str, Any]]]
    reused_from: NotRequired[int]
    cut_off: NotRequired[bool]


class Aggregation(TypedDict):
    """How the final answer of a turn was produced.

    Attributes:
        mode: The mode that produced the answer: ``"synthesize"``, ``"select"``, ``"vote"``,
            ``"sequential"`` or ``"analyze"`` (the fusion judge); ``"synthesize"`` when select,
            vote or analyze fell back to it; ``"cascade"`` when a cascade's first stage agreed
            (no layer or aggregator ran).
        requested_mode: ``MoAContext.aggregator_mode``.
        model: The aggregator's label, or None when no model was called (vote).
        chosen: For select, vote and cascade, the ``index`` of the last layer's proposal whose
            text is the answer (for cascade, of the first stage); else None.
        fallback: Why the requested mode fell back to synthesis, or None.
        judge_text: For select, the aggregator's reply that names its selection (the field
            keeps its old name: it is select's reply, not the fusion judge's); else None.
        calls: Aggregator calls made (0 for vote, 2 for a select that fell back, one per
            window for sequential).
        seeds: The seed sent with each aggregator call (None where none was sent).
        usage: Tokens of all aggregator calls together, or None when none were reported.
        reviewed: True when a person reviewed the proposals before aggregation.
        analysis: For ``analyze``: the judge's typed analysis (`moa_graph.analysis`); else
            None.
    """

    mode: str
    requested_mode: str
    model: str | None
    chosen: int | None
    fallback: str | None
    judge_text: str | None
    calls: int
    seeds: list[int | None]
    usage: Usage | None
    reviewed: bool
    analysis: dict[str, Any] | None


class ProposerTask(TypedDict):
    """What one `Send` hands to the proposer node.

    Attributes:
        layer: The layer (`FIRST_STAGE` for a cascade's first stage, else 1 to ``rounds``).
        index: 0-based position of the call in its layer.
        spec_index: 0-based position of the call's spec (or model instance) in the layer's list.
        sample: 0-based sample of that spec.
        seed: Seed to send, or None to send none.
        model: Label for the record and the trace.
        messages: The prompt (references included after layer 1), before the spec's role.
        gate: Key of the layer's straggler gate when ``first_k`` is set, else None.
    """

    layer: int
    index: int
    spec_index: int
    sample: int
    seed: int | None
    model: str
    messages: list[BaseMessage]
    gate: str | None


class Review(TypedDict):
    """A person's decision on the last layer's proposals (``MoAContext.review``).

    Attributes:
        kept: ``index`` of each proposal the aggregator may see, in order.
        edited: Replacement text per kept proposal ``index`` (as a string key, for JSON).
    """

    kept: list[int]
    edited: dict[str, str]


class InputState(TypedDict):
    """What a caller sends: the conversation, as in `langgraph.graph.MessagesState`."""

    messages: Annotated[list[AnyMessage], add_message_copies]
    """The conversation. The aggregator's answer is appended as an `AIMessage`."""


class OutputState(InputState):
    """What a caller gets back: the conversation with the answer, and this turn's proposals."""

    proposals: Annotated[list[Proposal], operator.add]
    """One record per proposer call of the current turn, ordered by layer, then index.

    The proposer branches of a layer append through this reducer; the first layer of a turn
    resets it with `langgraph.types.Overwrite`; the aggregator rewrites it to set `selected`."""

    aggregation: Aggregation
    """How the answer of this turn was produced: mode, fallback, aggregator calls and usage."""


class MoAState(OutputState, total=False):
    """The full state: `OutputState` plus the per-turn bookkeeping of the layer loop."""

    layer: int
    """The layer being run: `FIRST_STAGE` (0) for a cascade's first stage, else 1 to
    ``rounds``; set afresh at the start of every turn."""

    turn: str
    """Id of the last message when the turn began: a different id means a new turn."""

    review: Review | None
    """The reviewer's decision on the last layer (``MoAContext.review``); None otherwise."""
