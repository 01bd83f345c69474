"""Choose the proposers from your own data: a panel picked on one split, judged on another.

Each candidate (a model spec: different models, or one model with other temperatures or
system prompts) answers the selection split once, alone; the panel is then grown greedily, one
candidate at a time, by how well the members do *together* on those recorded answers: their
vote (the most common extracted answer, as ``aggregator_mode="vote"`` takes it) or their
coverage (items at least one member gets right, what an aggregator that picks well could
reach). No aggregator runs per subset. This follows the complementarity of "Mixture of
Complementary Agents" (arXiv 2605.24048) and the warning of Self-MoA (arXiv 2502.00674) that a
weaker member can lower quality: the panel is chosen on data, not by count. The chosen panel
then runs for real on the held-out split, next to the best single candidate, with intervals.
"""

import dataclasses
import json
import math
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from moa_graph.agreement import majority
from moa_graph.errors import MoAConfigError
from moa_graph.eval.markdown import render
from moa_graph.eval.records import ItemRecord
from moa_graph.eval.report import EvalReport
from moa_graph.eval.runner import arun_eval
from moa_graph.eval.suites import Suite, load_suite
from moa_graph.eval.systems import SINGLE
from moa_graph.spec import to_model_spec
from moa_graph.sync import run_sync

PanelScore = Literal["vote", "coverage"]


@dataclass
class PanelChoice:
    """The chosen panel and how it did.

    Attributes:
        candidates: The candidate specs, as given.
        chosen: The chosen specs, in the order they joined.
        steps: One entry per greedy step: the spec added and the selection score (share of
            the selection items) the panel reached with it.
        single_scores: Each candidate's accuracy alone on the selection split.
        context: The MoAContext fields of the panel (what ``--context`` reads); each member's
            spec as it was measured (temperature 0 unless the candidate set one).
        selection: The selection run (every candidate alone).
        held_out: The held-out run: the panel, and the best single candidate of the
            selection split, with intervals; None when no item was held out.
    """

    candidates: list[str]
    chosen: list[str]
    steps: list[dict[str, Any]]
    single_scores: dict[str, float]
    context: dict[str, Any]
    selection: EvalReport
    held_out: EvalReport | None


def greedy_panel(
    answers: dict[str, list[str]], scores: dict[str, list[float]], k: int, how: PanelScore
) -> list[tuple[str, float]]:
    """Grow a panel of up to `k` candidates greedily; return each step's (candidate, score).

    Args:
        answers: Each candidate's answer text per item (selection split, in one order).
        scores: Each candidate's score per item (1.0 right, 0.0 wrong).
        k: Most members.
        how: ``vote``: the share of items where the members' vote picks a right answer (the
            vote's winner is the first member whose extracted answer is the most common);
            ``coverage``: the share of items at least one member gets right.

    Returns:
        ``(candidate, score)`` per step of the chosen panel; a draw goes to the candidate
        given first. Growth goes on to `k` members even through a step that does not raise
        the score (a vote of two is its first member wherever they disagree, so only a third
        can change it); the panel is then the first steps with the best score, the fewest on
        a tie (a weaker member can lower a vote).
    """
    names = list(answers)
    items = len(next(iter(answers.values()), []))
    chosen: list[str] = []
    steps: list[tuple[str, float]] = []
    while len(chosen) < k and items:
        options = [(panel_score([*chosen, c], answers, scores, how), c)
                   for c in names if c not in chosen]  # fmt: skip
        if not options:
            break
        score, pick = max(options, key=lambda o: (o[0], -names.index(o[1])))
        chosen.append(pick)
        steps.append((pick, score))
    if not steps:
        return steps
    best = max(score for _, score in steps)
    return steps[: next(i for i, (_, score) in enumerate(steps) if score == best) + 1]


def panel_score(
    members: Sequence[str],
    answers: dict[str, list[str]],
    scores: dict[str, list[float]],
    how: PanelScore,
) -> float:
    """The share of items the members get right together (`greedy_panel`'s `how`)."""
    items = len(answers[members[0]])
    total = 0.0
    for i in range(items):
        if how == "coverage":
            total += max(scores[m][i] for m in members)
            continue
        winner = majority([answers[m][i] for m in members], None)
        total += 0.0 if winner is None else scores[members[winner]][i]
    return total / items


async def achoose_panel(
    suite: str | Suite,
    candidates: Sequence[str],
    *,
    k: int = 3,
    how: PanelScore = "vote",
    selection_share: float = 0.5,
    n: int | None = None,
    seed: int = 7,
    settings: dict[str, Any] | None = None,
    out: str | Path | None = None,
    **options: Any,
) -> PanelChoice:
    """Choose `k` proposers among `candidates` on a selection split; judge them on the rest.

    Args:
        suite: A suite name or `Suite` (exact-answer suites only).
        candidates: Model specs (``"local:smollm2 temperature=1.0"``); each answers alone,
            greedy unless its spec sets a temperature.
        k: Most proposers in the panel.
        how: ``vote`` (the panel votes; the context uses ``aggregator_mode="vote"``) or
            ``coverage`` (the panel feeds an aggregator; the context keeps the settings' mode).
        selection_share: Share of the items (shuffled with `seed`) the choice is made on.
        n: Items of the suite to use (see `moa_graph.eval.load_suite`).
        seed: Seed of the split, the suite and the runs.
        settings: MoAContext fields shared by every run (e.g. ``max_tokens``).
        out: Folder for ``panel.json`` (the panel's context) and both runs' records.
        **options: More `arun_eval` options (``concurrency``, ``prices``, ``progress``).

    Raises:
        MoAConfigError: A judged suite, fewer than two candidates, a bad spec, `k` or share.
    """
    loaded = suite if isinstance(suite, Suite) else load_suite(suite, n=n, seed=seed)
    if loaded.judged:
        raise MoAConfigError("choosing a panel needs an exact-answer suite (it scores offline)")
    for candidate in candidates:
        to_model_spec("candidates", candidate)  # a bad spec fails before any call
    if len(set(candidates)) < 2 or len(set(candidates)) != len(candidates):
        raise MoAConfigError("give two distinct candidates or more, each once")
    if k < 1 or not 0 < selection_share <= 1:
        raise MoAConfigError("k must be >= 1 and selection_share in (0, 1]")
    items = list(loaded.items)
    random.Random(seed).shuffle(items)
    cut = max(1, math.ceil(selection_share * len(items)))
    picking = dataclasses.replace(loaded, items=items[:cut], name=f"{loaded.name} (selection)")
    folder = Path(out) if out is not None else None
    selection = await arun_eval(
        picking, [SINGLE + c for c in candidates], settings=settings, seed=seed,
        out=folder / "selection" if folder else None, **options,
    )  # fmt: skip
    answers, scores = _by_candidate(selection.records, candidates, [i.id for i in items[:cut]])
    steps = greedy_panel(answers, scores, k, how)
    chosen = [candidate for candidate, _ in steps]
    context = {**(settings or {}), "proposers": [_as_measured(c) for c in chosen], "rounds": 1}
    if how == "vote":
        context["aggregator_mode"] = "vote"
    single = {c: sum(scores[c]) / len(scores[c]) for c in candidates}
    best = max(candidates, key=lambda c: (single[c], -candidates.index(c)))
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "panel.json").write_text(json.dumps(context, indent=2))
    held_out = None
    if cut < len(items):
        rest = dataclasses.replace(loaded, items=items[cut:], name=f"{loaded.name} (held out)")
        held_out = await _held_out(rest, context, best, seed, settings, folder, options)
    return PanelChoice(
        candidates=list(candidates), chosen=chosen,
        steps=[{"added": c, "score": round(s, 4)} for c, s in steps],
        single_scores={c: round(v, 4) for c, v in single.items()}, context=context,
        selection=selection, held_out=held_out,
    )  # fmt: skip


def _as_measured(candidate: str) -> dict[str, Any]:
    """The candidate's spec as its selection run asked it: greedy unless it sets a temperature.

    Without this, a member would take the panel context's temperature and answer otherwise
    than the answers it was chosen on.
    """
    spec = to_model_spec("candidates", candidate)
    fields = spec.to_dict()
    if spec.temperature is None:
        fields["temperature"] = 0.0
    return fields


async def _held_out(
    rest: Suite,
    context: dict[str, Any],
    best: str,
    seed: int,
    settings: dict[str, Any] | None,
    folder: Path | None,
    options: dict[str, Any],
) -> EvalReport:
    """Run the best single candidate and the panel on the held-out items."""
    with tempfile.TemporaryDirectory() as scratch:
        systems = Path(scratch) / "panel_system.json"
        systems.write_text(json.dumps({"panel": context}))
        return await arun_eval(
            rest, [SINGLE + best, f"json:{systems}"], settings=settings, seed=seed,
            out=folder / "held_out" if folder else None, **options,
        )  # fmt: skip


def _by_candidate(
    records: list[ItemRecord], candidates: Sequence[str], order: list[str]
) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """Each candidate's answers and scores per item of the selection split, in `order`."""
    found = {(r["system"], r["item"]): r for r in records}
    answers: dict[str, list[str]] = {}
    scores: dict[str, list[float]] = {}
    for candidate in candidates:
        rows = [found[(SINGLE + candidate, item)] for item in order]
        answers[candidate] = [r["answer"] or "" for r in rows]
        scores[candidate] = [float(r["score"] or 0.0) for r in rows]
    return answers, scores


def choose_panel(suite: str | Suite, candidates: Sequence[str], **options: Any) -> PanelChoice:
    """Run `achoose_panel` to the end (for scripts and notebooks without an event loop).

    Example::

        choice = choose_panel("additions", ["local:smollm2", "local:smollm2 temperature=1.0",
                                            "local:smollm2 temperature=0.5"], k=2, n=40)
        print(choice.chosen, render(choice.held_out))
    """
    return run_sync(achoose_panel(suite, candidates, **options))


def describe(choice: PanelChoice) -> str:
    """The choice as Markdown: each step, each candidate alone, then the held-out table."""
    lines = [
        f"## Panel chosen on {choice.selection.items} selection items",
        "",
        "| step | added | panel score on the selection items |",
        "|---|---|---|",
        *(f"| {i} | {s['added']} | {s['score']:.3f} |" for i, s in enumerate(choice.steps, 1)),
        "",
        "Alone on the selection items: "
        + ", ".join(f"{c} {v:.3f}" for c, v in choice.single_scores.items())
        + ".",
    ]
    if choice.held_out is not None:
        lines += ["", render(choice.held_out)]
    return "\n".join(lines)
