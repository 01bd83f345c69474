"""Judging an evaluation's answers: every record of a judged suite gets its score or preference.

`judge_all` asks `moa_graph.eval.judge.Judge` about every record: each answer rated 1-10
(``single``), each system against the baseline in both orders (``pairwise``), a flip between
the orders counting as a tie (MT-Bench's prompts), or each answer scored 1-5 on its item's
skills (``skills``, FLASK: `moa_graph.eval.flask`).
"""

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from moa_graph.eval.flask import PROMPT_VERSION, Rubric, skill_prompt
from moa_graph.eval.judge import (
    Judge,
    Judgment,
    combine_orders,
    consistent,
    pairwise_prompt,
    single_prompt,
)
from moa_graph.eval.records import ItemRecord
from moa_graph.eval.suites import Item, Suite

JudgeMode = Literal["pairwise", "single", "skills"]
"""``skills`` is FLASK's: each answer scored 1-5 on its item's skills."""


async def judge_all(
    judge: Judge,
    mode: JudgeMode,
    suite: Suite,
    records: list[ItemRecord],
    baseline: str,
    concurrency: int,
) -> None:
    """Fill each record's judged fields (``score`` or ``preference``) and ``judgments``."""
    items = {item.id: item for item in suite.items}
    slots = asyncio.Semaphore(concurrency)

    async def ask(prompt: tuple[str, list[Any]], skills: Sequence[str] = ()) -> Judgment:
        async with slots:
            return await judge.judge(*prompt, skills=skills)

    if mode == "skills":
        assert suite.rubrics is not None
        rubrics = suite.rubrics
        await asyncio.gather(*(_skills(r, items[r["item"]], ask, rubrics) for r in records))
        return
    if mode == "single":
        await asyncio.gather(*(_rate(r, items[r["item"]], ask) for r in records))
        return
    base = {r["item"]: r for r in records if r["system"] == baseline}
    others = [r for r in records if r["system"] != baseline]
    await asyncio.gather(*(_pair(r, base[r["item"]], items[r["item"]], ask) for r in others))


async def _rate(record: ItemRecord, item: Item, ask: Any) -> None:
    if not record["ok"]:
        record["score"] = 1.0  # the scale's lowest: a failure counts against the system
        return
    answers = [t["answer"] or "" for t in record["turns"]]
    judgments = await asyncio.gather(
        *(ask(single_prompt(item.turns, answers, turn, item.judge_references))
          for turn in range(len(item.turns)))
    )  # fmt: skip
    record["judgments"] = [j.to_dict() for j in judgments]
    ratings = [j.rating for j in judgments if j.rating is not None]
    record["score"] = sum(ratings) / len(ratings) if ratings else None
    record["judge_errors"] = sum(j.rating is None for j in judgments)


async def _skills(record: ItemRecord, item: Item, ask: Any, rubrics: Mapping[str, Rubric]) -> None:
    if not record["ok"]:  # the scale's lowest on every skill: a failure counts against it
        record["skill_scores"] = dict.fromkeys(item.skills, 1.0)
        record["score"], record["judge_errors"] = 1.0, 0
        return
    reference = item.judge_references[0] if item.judge_references else None
    messages = skill_prompt(item.turns[0], record["answer"] or "", item.skills, reference, rubrics)
    judgment = await ask((PROMPT_VERSION, messages), item.skills)
    scores = judgment.scores or {}
    record["judgments"] = [judgment.to_dict()]
    record["skill_scores"] = scores
    record["score"] = sum(scores.values()) / len(scores) if scores else None
    record["judge_errors"] = int(judgment.error is not None)


async def _pair(record: ItemRecord, base: ItemRecord, item: Item, ask: Any) -> None:
    if not record["ok"] or not base["ok"]:
        # No judge call: a side that failed to answer loses; both failing is a tie.
        record["preference"] = 0.5 if record["ok"] == base["ok"] else float(record["ok"])
        return
    mine = [t["answer"] or "" for t in record["turns"]]
    theirs = [t["answer"] or "" for t in base["turns"]]
    refs = item.judge_references
    prompts = []
    for turn in range(len(item.turns)):
        prompts.append(pairwise_prompt(item.turns, mine, theirs, turn, refs))
        prompts.append(pairwise_prompt(item.turns, theirs, mine, turn, refs))
    judgments = await asyncio.gather(*(ask(p) for p in prompts))
    record["judgments"] = [
        {**j.to_dict(), "turn": i // 2 + 1, "system_is": "A" if i % 2 == 0 else "B"}
        for i, j in enumerate(judgments)
    ]
    preferences = []
    counts = {"pairs_judged": 0, "consistent": 0, "verdicts": 0, "first_position": 0}
    for first, swapped in zip(judgments[::2], judgments[1::2], strict=True):
        for j in (first, swapped):
            if j.verdict in ("A", "B"):
                counts["verdicts"] += 1
                counts["first_position"] += j.verdict == "A"
        preference = combine_orders(first.verdict, swapped.verdict)
        if preference is None or first.verdict is None or swapped.verdict is None:
            continue  # (the verdict checks narrow the types for `consistent`)
        preferences.append(preference)
        counts["pairs_judged"] += 1
        counts["consistent"] += consistent(first.verdict, swapped.verdict)
    record["pairs_judged"], record["consistent"] = counts["pairs_judged"], counts["consistent"]
    record["verdicts"], record["first_position"] = counts["verdicts"], counts["first_position"]
    record["judge_errors"] = sum(j.verdict is None for j in judgments)
    record["preference"] = sum(preferences) / len(preferences) if preferences else None
