"""The record of one (item, system) of an evaluation: its answers per turn, score and cost.

Every figure of the report (`moa_graph.eval.report`) is computed from these records, and
``items.jsonl`` holds them, so each number can be traced to the items.
"""

import json
from typing import Any, NotRequired

from typing_extensions import TypedDict

from moa_graph.batch.records import BatchError, BatchRecord
from moa_graph.eval.suites import Item
from moa_graph.run_summary import made_calls
from moa_graph.state import FIRST_STAGE, Usage
from moa_graph.usage import sum_costs, total_usage


class TurnRecord(TypedDict):
    """One turn a system answered (one batch record, summarized)."""

    prompt: str | None
    answer: str | None
    status: str
    error: BatchError | None
    latency_s: float
    usage: Usage | None
    calls: int
    cost_usd: float | None


class ItemRecord(TypedDict):
    """One (item, system) of an evaluation.

    Attributes:
        item: The item's id.
        system: The system's name.
        category: The item's category, or None.
        ok: True when every turn answered.
        answer: The last turn's answer as scored (`scored_answer`: tool calls as JSON when it
            made some), or None when a turn failed.
        turns: Each turn's answer, status, latency, usage, calls and cost.
        reference: The exact answer (exact-answer suites), or None.
        score: 1.0/0.0 (exact), the mean rating (single judging), or None.
        correct: For exact suites: the score is 1.0; else None.
        preference: Pairwise judging: 1 win, 0.5 tie, 0 loss against the baseline, or None.
        length: Characters of the answers.
        tokens: Input and output tokens of every call of every turn.
        calls: Model calls of every turn.
        latency_s: Seconds of all turns, or None when a turn was answered partly from the
            node cache (a resumed or redone run).
        cost_usd: USD of all turns, or None when a model has no price.
        escalated: For a system with a cascade: True when a turn went past the cascade's
            first stage to the MoA, False when every turn was answered by it; else None.
        cut_off: True when a turn's answer stopped at ``max_tokens`` (it may be cut off, and
            is scored as it is).
        judgments: The judge's replies, parsed, with their raw text.
        skill_scores: FLASK: the 1-5 score of each of the item's skills the judge scored
            (`score` is their mean); 1 on every skill when the run failed.
        judge_errors: Judgments without a verdict or rating (judged suites).
        pairs_judged: Pairwise: pairs with a verdict in both orders.
        consistent: Pairwise: pairs whose verdict survived the swap.
        verdicts: Pairwise: judgments that named A or B.
        first_position: Pairwise: judgments that named the answer shown first.
    """

    item: str
    system: str
    category: str | None
    ok: bool
    answer: str | None
    turns: list[TurnRecord]
    reference: str | None
    score: float | None
    correct: bool | None
    preference: float | None
    length: int
    tokens: int
    calls: int
    latency_s: float | None
    cost_usd: float | None
    escalated: bool | None
    cut_off: bool
    judgments: list[dict[str, Any]]
    skill_scores: NotRequired[dict[str, float]]
    judge_errors: NotRequired[int]
    pairs_judged: NotRequired[int]
    consistent: NotRequired[int]
    verdicts: NotRequired[int]
    first_position: NotRequired[int]


def scored_answer(turn: BatchRecord) -> str | None:
    """Return the answer as a checker scores it.

    Its tool calls as JSON when it made some (``[{"name": ..., "args": {...}}]``), else its
    text (None when the turn failed).
    """
    calls = turn.get("tool_calls")
    return json.dumps(calls, sort_keys=True) if calls else turn["answer"]


def item_record(item: Item, system: str, turns: list[BatchRecord]) -> ItemRecord:
    """Return the record of `system` on `item` from its turns' batch records (unscored)."""
    ok = len(turns) == len(item.turns) and all(t["status"] == "ok" for t in turns)
    costs = [t.get("cost_usd") for t in turns]
    usage = total_usage(t.get("usage") for t in turns)
    return ItemRecord(
        **{
            "item": item.id,
            "system": system,
            "category": item.category,
            "ok": ok,
            "answer": scored_answer(turns[-1]) if ok else None,
            "turns": [
                TurnRecord(
                    **{
                        "prompt": t.get("prompt"),
                        "answer": scored_answer(t),
                        "status": t["status"],
                        "error": t["error"],
                        "latency_s": t["latency_s"],
                        "usage": t.get("usage"),
                        "calls": _calls(t),
                        "cost_usd": t.get("cost_usd"),
                    }
                )
                for t in turns
            ],
            "reference": item.reference,
            "score": None,
            "correct": None,
            "preference": None,
            "length": sum(len(t["answer"] or "") for t in turns),
            "tokens": (usage["input_tokens"] + usage["output_tokens"]) if usage else 0,
            "calls": sum(_calls(t) for t in turns),
            # A turn answered partly from the node cache (a resumed or redone run) took less time
            # than its calls did: it has no latency.
            "latency_s": None
            if any(t.get("cached_calls") for t in turns)
            else round(sum(t["latency_s"] for t in turns), 3),
            "cost_usd": sum_costs(costs),
            "escalated": _escalated(turns) if ok else None,
            "cut_off": any(t.get("cut_off") for t in turns),
            "judgments": [],
        }
    )


def _calls(record: BatchRecord) -> int:
    aggregation = record["aggregation"]
    return len(made_calls(record["proposals"])) + (aggregation["calls"] if aggregation else 0)


def _escalated(turns: list[BatchRecord]) -> bool | None:
    """Whether a cascade escalated on some turn; None when the runs had no cascade."""
    if not any(p["layer"] == FIRST_STAGE for t in turns for p in t["proposals"]):
        return None
    return any(t["aggregation"] is None or t["aggregation"]["mode"] != "cascade" for t in turns)
