"""Votes and cascades replayed from one system's recorded samples, with no new model call.

A run that drew k samples per item (a vote of k: one proposer spec with ``n=k``, one layer)
holds what a vote of any j <= k would have read, its first j samples, and what a cascade would
have asked: a first stage of its first j samples that answers alone when at least a share of
them agree (`moa_graph.agreement.agreed_answer`, the graph's gate), and otherwise escalates
to the vote of all k, reusing those j (as ``MoAContext.cascade`` does when the first stage and
the proposers have the same shape, `moa_graph.layers.reused_first_stage`). So one expensive run
prices every cheaper vote and cascade on the same samples, paired item by item.

A replayed system's tokens and calls are the recorded samples' own; it has no latency (a
replay takes no time, and the samples were timed under another system's load). Follows
self-consistency (Wang et al., arXiv 2203.11171) for the vote and FrugalGPT (Chen et al.,
arXiv 2305.05176, section 3) for the cascade.
"""

from dataclasses import dataclass
from typing import Literal

from moa_graph.agreement import Candidate, agreed_answer, majority
from moa_graph.batch.records import BatchRecord
from moa_graph.errors import MoAConfigError
from moa_graph.eval.records import ItemRecord, TurnRecord
from moa_graph.eval.suites import Item
from moa_graph.eval.systems import System
from moa_graph.state import Proposal
from moa_graph.usage import total_usage

REPLAY = "replay:"
"""Prefix of a replayed system's name: ``replay:vote:5``, ``replay:cascade:3:9``."""


@dataclass(frozen=True)
class Replay:
    """A vote or cascade replayed from the samples another system recorded.

    Attributes:
        kind: ``"vote"`` (the most common answer of the first `samples`, as the ``vote`` mode
            counts) or ``"cascade"`` (`first_stage` samples, then all `samples` when they do
            not agree).
        samples: Samples the vote reads (for a cascade, after an escalation), at least 1.
        first_stage: A cascade's first samples, 1 to `samples`; 0 for a vote.
        agreement: A cascade's share of first-stage answers that must agree, above 0, at
            most 1 (``MoAContext.cascade_agreement``).
    """

    kind: Literal["vote", "cascade"]
    samples: int
    first_stage: int = 0
    agreement: float = 1.0

    @property
    def name(self) -> str:
        """The system's name in the report, e.g. ``replay:cascade:3:9``."""
        if self.kind == "vote":
            return f"{REPLAY}vote:{self.samples}"
        share = "" if self.agreement == 1.0 else f":{self.agreement:g}"
        return f"{REPLAY}cascade:{self.first_stage}:{self.samples}{share}"

    @property
    def description(self) -> str:
        """One line for the report."""
        if self.kind == "vote":
            return f"vote of the first {self.samples} recorded samples (replayed)"
        share = "all" if self.agreement == 1.0 else f"{self.agreement:.0%}"
        return (
            f"cascade: {self.first_stage} recorded samples, answered when {share} agree, "
            f"else the vote of {self.samples} reusing them (replayed)"
        )

    @classmethod
    def parse(cls, text: str) -> "Replay":
        """Read ``vote:K``, ``cascade:J:K`` or ``cascade:J:K:SHARE`` (``--replay``).

        Raises:
            MoAConfigError: Another form, or numbers out of range; the message gives the forms.
        """
        forms = "use vote:K, cascade:J:K or cascade:J:K:SHARE, e.g. cascade:3:9:0.67"
        parts = text.strip().removeprefix(REPLAY).split(":")
        try:
            if parts[0] == "vote" and len(parts) == 2:
                replay = cls("vote", int(parts[1]))
            elif parts[0] == "cascade" and len(parts) in (3, 4):
                share = float(parts[3]) if len(parts) == 4 else 1.0
                replay = cls("cascade", int(parts[2]), int(parts[1]), share)
            else:
                raise ValueError
        except ValueError:
            raise MoAConfigError(f"replay {text!r} is not understood: {forms}") from None
        if replay.samples < 1 or (
            replay.kind == "cascade"
            and not (1 <= replay.first_stage <= replay.samples and 0 < replay.agreement <= 1)
        ):
            raise MoAConfigError(f"replay {text!r}: need 1 <= J <= K and 0 < SHARE <= 1 ({forms})")
        return replay


def check_replay_source(source: System, replays: list[Replay]) -> None:
    """Check that `source` records the samples `replays` read.

    Raises:
        MoAConfigError: `source` is not one layer of one proposer spec voted on, or draws
            fewer samples than a replay reads; the message names the setting to change.
    """
    ctx = source.context
    specs = ctx.proposer_specs(1)
    if ctx.rounds != 1 or len(specs) != 1 or ctx.aggregator_mode != "vote" or ctx.cascade:
        raise MoAConfigError(
            f"replay_from={source.name!r}: replays read one layer of one proposer's samples "
            "under aggregator_mode 'vote', e.g. proposers=['local:smollm2 n=9 "
            "temperature=0.7'], rounds=1, no cascade"
        )
    most = max(r.samples for r in replays)
    if specs[0].n < most:
        raise MoAConfigError(
            f"replay_from={source.name!r} draws {specs[0].n} samples per item but a replay "
            f"reads {most}: give its proposer n={most} or more"
        )


def replay_item(
    replay: Replay, item: Item, system: str, turn: BatchRecord, answer_pattern: str | None
) -> ItemRecord:
    """Return the (unscored) record of `replay` on a one-turn `item` from the source's `turn`.

    A failed source run fails the replay too; a sample that failed is one the vote lacks (as
    in the graph) and costs what it reported.
    """
    ordered = sorted((p for p in turn["proposals"] if p["layer"] == 1), key=lambda p: p["index"])
    first = ordered[: replay.first_stage]
    agreed: Candidate | None = None
    if replay.kind == "cascade":
        agreed = agreed_answer(_candidates(first), answer_pattern, replay.agreement)
    escalated = replay.kind == "cascade" and agreed is None
    used = first if agreed is not None else ordered[: replay.samples]
    chosen = agreed if agreed is not None else _vote(used, answer_pattern)
    ok = turn["status"] == "ok" and chosen is not None
    usage = total_usage(p["usage"] for p in used)
    tokens = usage["input_tokens"] + usage["output_tokens"] if usage else 0
    text = chosen.text if ok and chosen is not None else None
    return ItemRecord(
        item=item.id, system=system, category=item.category, ok=ok, answer=text,
        turns=[
            TurnRecord(
                prompt=turn.get("prompt"), answer=text, status="ok" if ok else "error",
                error=None if ok else turn["error"], latency_s=0.0, usage=usage,
                calls=len(used), cost_usd=None,
            )
        ],
        reference=item.reference, score=None, correct=None, preference=None,
        length=len(text or ""), tokens=tokens, calls=len(used), latency_s=None, cost_usd=None,
        escalated=escalated if replay.kind == "cascade" and ok else None, judgments=[],
        cut_off=ok and chosen is not None and any(
            p.get("cut_off") for p in used if p["index"] == chosen.index),
    )  # fmt: skip


def _candidates(proposals: list[Proposal]) -> list[Candidate]:
    return [Candidate(p["index"], p["content"]) for p in proposals if p["content"] is not None]


def _vote(used: list[Proposal], pattern: str | None) -> Candidate | None:
    candidates = _candidates(used)
    winner = majority([c.text for c in candidates], pattern)
    return None if winner is None else candidates[winner]
