"""Graph state: what callers send, what they get back, and the per-turn bookkeeping."""

import operator
from typing import Annotated, Any

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


class Usage(TypedDict):
    """Token counts of one model call, as the provider reported them."""

    input_tokens: int
    output_tokens: int


class Proposal(TypedDict):
    """One proposer call of the current turn.

    Attributes:
        layer: 1-based MoA layer the call belongs to.
        index: 0-based position of the proposer within its layer.
        model: The model spec (e.g. ``"local:smollm2"``) or, for a model instance, its name.
        content: The answer text, or None when the call failed.
        error: None on success, else a short ``"ErrorType: message"`` text.
        usage: Tokens the provider reported, or None when it reported none.
        latency_s: Wall time of the call in seconds, including time queued at the provider.
    """

    layer: int
    index: int
    model: str
    content: str | None
    error: str | None
    usage: Usage | None
    latency_s: float


class InputState(TypedDict):
    """What a caller sends: the conversation, as in `langgraph.graph.MessagesState`."""

    messages: Annotated[list[AnyMessage], add_message_copies]
    """The conversation. The aggregator's answer is appended as an `AIMessage`."""


class OutputState(InputState):
    """What a caller gets back: the conversation with the answer, and this turn's proposals."""

    proposals: Annotated[list[Proposal], operator.add]
    """One record per proposer call of the current turn, ordered by layer, then index.

    The proposer branches of a layer append through this reducer; the first layer of a turn
    resets it with `langgraph.types.Overwrite`."""


class MoAState(OutputState, total=False):
    """The full state: `OutputState` plus the per-turn bookkeeping of the layer loop."""

    layer: int
    """The layer being run (1-based); reset to 1 at the start of every turn."""

    turn: str
    """Id of the last message when the turn began: a different id means a new turn."""
