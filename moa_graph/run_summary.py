"""What a finished run says: its answer, its usage, its panel, the references of the answer.

Every face reads a run here, never from a node's name or a layer number: ChatMoA's
``response_metadata`` and ``usage_metadata``, ``/v1``'s ``moa`` field and usage, ``moa-graph
ask --json``, the MCP answer graph, batch and eval records, and `moa_graph.agents.MoAMiddleware`
(the references it injects).
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from typing_extensions import TypedDict

from moa_graph.layers import layer_references
from moa_graph.state import FIRST_STAGE, Aggregation, Proposal, Usage
from moa_graph.usage import hit_max_tokens, run_usage, usage_by_model

__all__ = [
    "PanelStatus",
    "RunSummary",
    "summarize",
]


_FAILED = ("failed", "timeout")
"""Statuses of calls that did not answer; ``cancelled`` (cut off by ``first_k``) is not one."""


class PanelStatus(TypedDict):
    """How many proposals of the layer the answer was made from were asked for and answered.

    Attributes:
        proposals_asked: Proposer calls of that layer (a cascade's first stage when it
            answered, else the last layer).
        proposals_answered: Those that answered (``status == "ok"``).
        degraded: True when a proposer of that layer failed or timed out, so the answer was
            made from fewer proposals than asked for (calls cut off by ``first_k`` are not
            failures).
    """

    proposals_asked: int
    proposals_answered: int
    degraded: bool


class UsageTotals(Usage):
    """Tokens of every call of a run: input, output and their total."""

    total_tokens: int


class RunSummary(PanelStatus):
    """One finished run, as every face reports it.

    Attributes:
        answer: The answer's text ("" when it is only tool calls).
        tool_calls: The answer's tool calls (``name``, ``args``, ``id``), if any.
        aggregation: How the answer was made (`moa_graph.state.Aggregation`).
        usage: Tokens every call of the run reported, summed (zeros when none reported).
        usage_by_model: The same per model label.
        calls: Model calls the run made (proposers, samples and aggregator calls; a
            first-stage answer reused by an escalated cascade counts once).
        calls_without_usage: Calls whose provider reported no usage (their tokens are not in
            `usage`).
        references: The texts the answer was made from: the first stage's answers when a
            cascade answered, else the last layer's.
        proposals: Each proposer call, compactly (`proposal_digest`: model, layer, status,
            tokens, latency in seconds, cut_off, reused).
        cut_off: True when the answer stopped at ``max_tokens`` (the aggregator's reply, or
            the proposal a vote, a selection or a cascade returned): it may be cut off.
        proposals_cut_off: Proposer calls of the run that stopped at their ``max_tokens``.
    """

    answer: str
    tool_calls: list[dict[str, Any]]
    aggregation: Aggregation
    usage: UsageTotals
    usage_by_model: dict[str, Usage]
    calls: int
    calls_without_usage: int
    references: list[str]
    proposals: list[dict[str, Any]]
    cut_off: bool
    proposals_cut_off: int


def summarize(out: Mapping[str, Any]) -> RunSummary:
    """Return the summary of a finished run from the graph's output state.

    Args:
        out: The output of `moa_graph.build_moa_graph`'s graph (``messages``, ``proposals``,
            ``aggregation``).

    Raises:
        KeyError: `out` is not a finished run's output.
    """
    answer = out["messages"][-1]
    proposals: list[Proposal] = out.get("proposals", [])
    aggregation: Aggregation = out["aggregation"]
    made = made_calls(proposals)
    usage = run_usage(out) or Usage(input_tokens=0, output_tokens=0)
    return RunSummary(
        answer=answer.text,
        tool_calls=[
            {"name": c["name"], "args": c["args"], "id": c["id"]}
            for c in getattr(answer, "tool_calls", [])
        ],
        aggregation=aggregation,
        usage=UsageTotals(**usage, total_tokens=usage["input_tokens"] + usage["output_tokens"]),
        usage_by_model=usage_by_model(proposals, aggregation),
        calls=len(made) + aggregation["calls"],
        calls_without_usage=sum(p["usage"] is None for p in made)
        + (aggregation["calls"] if aggregation["usage"] is None else 0),
        references=layer_references(proposals, source_layer(proposals)),
        proposals=proposal_digest(proposals),
        cut_off=answer_cut_off(answer, proposals, aggregation),
        proposals_cut_off=sum(bool(p.get("cut_off")) for p in made),
        **panel_status(proposals),
    )


def answer_cut_off(
    answer: BaseMessage, proposals: Sequence[Proposal], aggregation: Aggregation
) -> bool:
    """Return True when the answer stopped at ``max_tokens``.

    The answer is the aggregator's reply, or the proposal a vote, a selection or a cascade
    returned.
    """
    if aggregation["calls"] and aggregation["mode"] != "select":
        return hit_max_tokens(answer)
    layer = source_layer(proposals)
    chosen = [p for p in proposals if p["layer"] == layer and p["index"] == aggregation["chosen"]]
    return bool(chosen and chosen[0].get("cut_off"))


def source_layer(proposals: Sequence[Proposal]) -> int:
    """Return the layer the answer was made from: the first stage when a cascade answered."""
    return max((p["layer"] for p in proposals), default=FIRST_STAGE)


def panel_status(proposals: Sequence[Proposal]) -> PanelStatus:
    """Return how many proposals of the answer's layer (`source_layer`) were asked and answered."""
    layer = source_layer(proposals)
    in_layer = [p for p in proposals if p["layer"] == layer]
    answered = sum(p["status"] == "ok" for p in in_layer)
    failed = any(p["status"] in _FAILED for p in in_layer)
    return PanelStatus(proposals_asked=len(in_layer), proposals_answered=answered, degraded=failed)


def made_calls(proposals: Iterable[Proposal]) -> list[Proposal]:
    """Return the records of calls this run made: all but first-stage answers reused in layer 1."""
    return [p for p in proposals if "reused_from" not in p]


def proposal_digest(proposals: Iterable[Proposal]) -> list[dict[str, Any]]:
    """Return each proposal's model, layer, status, tokens and latency (seconds), compactly.

    Each also says whether it stopped at ``max_tokens`` (``cut_off``) and whether it repeats a
    first-stage answer instead of a new call (``reused``: an escalated cascade's layer 1).
    """
    return [
        {
            "model": p["model"],
            "layer": p["layer"],
            "status": p["status"],
            "tokens": None
            if p["usage"] is None
            else p["usage"]["input_tokens"] + p["usage"]["output_tokens"],
            "latency_s": p["latency_s"],
            "cut_off": bool(p.get("cut_off")),
            "reused": "reused_from" in p,
        }
        for p in proposals
    ]
