"""The numbers of an evaluation, computed from per-item records, and their Markdown table.

Pure: `build_report` takes the records `moa_graph.eval.runner` produced (one per item and
system) and computes every figure from them, so each number can be traced to the items.

A record (``dict``) has: ``item``, ``system``, ``ok`` (every turn answered), ``score`` (exact
suites: the checker's 0-1 score; single grading: the mean 1-10 rating; None when unscored),
``correct`` (exact suites), ``preference`` (pairwise: 1 win, 0.5 tie, 0 loss against the
baseline, None for the baseline or when the judge gave no verdict), the pairwise counts over
the item's turns (``pairs_judged``: both orders have a verdict; ``consistent``: of those, the
ones that survived the swap; ``verdicts``: verdicts naming A or B; ``first_position``: of
those, the ones naming A), ``judge_errors`` (judgments without a verdict), ``length``
(characters of the answers), ``tokens``, ``calls``, ``latency_s``, ``cost_usd``.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from moa_graph.eval.records import ItemRecord
from moa_graph.eval.skill_report import SkillReport
from moa_graph.eval.stats import (
    Verdict,
    bootstrap_mean,
    length_adjusted_win_rate,
    mcnemar_exact,
    p_value_text,
    percentile,
    verdict,
    wilson,
)
from moa_graph.eval.systems import BEST_SINGLE
from moa_graph.state import Usage

Metric = Literal["accuracy", "rating", "win rate"]

LENGTH_WARNING_POINTS = 0.10
"""Warn when the length-adjusted win rate moves the raw one by this much (10 points)."""


@dataclass
class SystemResult:
    """One system's quality and cost over the items.

    Attributes:
        name: The system.
        description: Its shape and models.
        metric: ``accuracy`` (exact suites), ``rating`` (1-10 single grading) or ``win rate``
            (pairwise against the baseline).
        quality: Accuracy, mean rating or win rate; None for the pairwise baseline itself.
        low: Lower end of the 95% interval (Wilson for accuracy, bootstrap otherwise), or None.
        high: Upper end, or None.
        n: Items that count toward `quality`.
        correct: Items answered correctly (accuracy only), else None.
        failures: Items whose run failed (scored as wrong, lowest rating, or a loss).
        calls_per_item: Model calls per item (every proposer call, the aggregator's).
        tokens_per_item: Input plus output tokens per item.
        cost_per_item: USD per item, or None when a model had no price.
        latency_p50_s: Median seconds per item (all turns), under the run's concurrency; None
            when no item has a latency (replayed, or answered from the cache).
        latency_p95_s: 95th percentile of the same.
        chosen_from: For ``best-single``: the single system it is, picked after seeing the
            results (an optimistic baseline); else None.
        escalation_rate: For a system with a cascade: the share of its answered items that
            went past the first stage to the MoA; else None.
        cut_off: Items whose answer stopped at ``max_tokens`` (scored as they are: raise
            ``max_tokens`` when it is many).
    """

    name: str
    description: str
    metric: Metric
    quality: float | None
    low: float | None
    high: float | None
    n: int
    correct: int | None
    failures: int
    calls_per_item: float
    tokens_per_item: float
    cost_per_item: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    chosen_from: str | None = None
    escalation_rate: float | None = None
    cut_off: int = 0


@dataclass
class Comparison:
    """One system against a baseline on the same items.

    Attributes:
        system: The system.
        baseline: What it is compared with.
        metric: As `SystemResult.metric`.
        n: Paired items in the comparison.
        estimate: The difference system minus baseline (accuracy, rating), or the win rate.
        low: Lower end of its 95% paired-bootstrap interval.
        high: Upper end.
        verdict: ``better``, ``not distinguishable`` or ``worse`` at 95%: the interval excludes
            0 (0.5 for a win rate), and for accuracy McNemar's p is also below 0.05.
        p_value: McNemar's exact p (accuracy only), else None.
        consistency: Share of judged pairs whose verdict survived swapping the answers
            (pairwise only).
        first_position_rate: Share of verdicts that named the answer shown first (pairwise).
        length_adjusted: The win rate at zero length difference (pairwise; see
            `moa_graph.eval.stats.length_adjusted_win_rate`).
        length_warning: Set when `length_adjusted` moves the win rate by 10 points or more.
        judge_errors: Judgments without a verdict, left out.
        chosen_after_the_fact: True when the baseline is ``best-single``.
    """

    system: str
    baseline: str
    metric: Metric
    n: int
    estimate: float
    low: float
    high: float
    verdict: Verdict
    p_value: float | None = None
    consistency: float | None = None
    first_position_rate: float | None = None
    length_adjusted: float | None = None
    length_warning: str | None = None
    judge_errors: int = 0
    chosen_after_the_fact: bool = False

    def sentence(self) -> str:
        """Return the one-line verdict: ``A vs B: not distinguishable at 95% (...)``."""
        if self.metric == "win rate":
            figure = f"win rate {self.estimate:.3f}, 95% CI {self.low:.3f} to {self.high:.3f}"
        else:
            figure = (
                f"{self.metric} difference {self.estimate:+.3f}, 95% CI {self.low:+.3f} to "
                f"{self.high:+.3f}"
            )
        p = f", McNemar p {_p_clause(self.p_value)}" if self.p_value is not None else ""
        after = " (best-single was chosen after the fact)" if self.chosen_after_the_fact else ""
        return (
            f"{self.system} vs {self.baseline}: {self.verdict} at 95% "
            f"({figure}{p}, n = {self.n}){after}"
        )


@dataclass
class EvalReport:
    """Everything an evaluation measured; `moa_graph.eval.run_eval` returns it.

    Attributes:
        suite: The suite's name.
        description: What the suite is.
        items: Distinct items asked (each prompt once).
        metric: As `SystemResult.metric`.
        baseline: The system the others are compared with.
        systems: One result per system, plus a ``best-single`` row when asked for.
        repeated: Items of the suite left out because their prompt repeated an earlier one's.
        comparisons: Each system against the baseline (and against ``best-single``).
        judge: The judge's label, or None.
        judge_mode: ``pairwise``, ``single`` or ``skills`` (FLASK), or None for exact suites.
        judge_usage: Tokens of every judge call, or None.
        notes: Warnings and caveats, each one line.
        records: The per-item records the figures come from.
        settings: Settings of the run (systems, judge, seed, versions), JSON-ready.
        skills: FLASK suites: the per-skill, per-domain and per-difficulty figures; else None.
    """

    suite: str
    description: str
    items: int
    metric: Metric
    baseline: str
    systems: list[SystemResult]
    comparisons: list[Comparison]
    judge: str | None = None
    judge_mode: str | None = None
    judge_usage: Usage | None = None
    notes: list[str] = field(default_factory=list)
    records: list[ItemRecord] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    repeated: int = 0
    skills: SkillReport | None = None

    def system(self, name: str) -> SystemResult:
        """Return the result of system `name`.

        Raises:
            KeyError: No such system.
        """
        for result in self.systems:
            if result.name == name:
                return result
        raise KeyError(name)

    def summary(self) -> dict[str, Any]:
        """Return the figures (no records or settings) as a JSON-ready dict."""
        return {
            "suite": self.suite, "description": self.description, "items": self.items,
            "repeated": self.repeated, "metric": self.metric, "baseline": self.baseline,
            "judge": self.judge,
            "judge_mode": self.judge_mode, "judge_usage": self.judge_usage,
            "systems": [asdict(s) for s in self.systems],
            "comparisons": [{**asdict(c), "sentence": c.sentence()} for c in self.comparisons],
            "notes": self.notes,
            "skills": asdict(self.skills) if self.skills else None,
        }  # fmt: skip


def build_report(
    *,
    suite: str,
    description: str,
    items: int,
    metric: Metric,
    systems: Sequence[tuple[str, str, bool]],
    records: list[ItemRecord],
    baseline: str,
    best_single: bool,
    seed: int = 0,
    repeated: int = 0,
) -> EvalReport:
    """Compute every figure of the report from the per-item `records`.

    Args:
        suite: The suite's name.
        description: What the suite is.
        items: Distinct items asked.
        metric: ``accuracy``, ``rating`` or ``win rate``.
        systems: (name, description, is a single model) per system, in report order.
        records: One record per (item, system), as the module docstring describes.
        baseline: The system every other one is compared with.
        best_single: Add a ``best-single`` row (the best single model on these items) and
            compare the other systems with it too.
        seed: Seed of the bootstrap resampling.
        repeated: Items of the suite left out as repeats (said in a note).

    Raises:
        ValueError: `baseline` is not among `systems`.
    """
    by_system = {name: [r for r in records if r["system"] == name] for name, _, _ in systems}
    if baseline not in by_system:
        raise ValueError(f"baseline {baseline!r} is not among the systems")
    results = [
        _system_result(name, text, metric, by_system[name], name == baseline, seed)
        for name, text, _ in systems
    ]
    comparisons = [
        _compare(name, baseline, metric, by_system, seed)
        for name, _, _ in systems
        if name != baseline
    ]
    notes = []
    singles = [r for r, (_, _, single) in zip(results, systems, strict=True) if single]
    if best_single and singles:
        # In pairwise mode the baseline has no win rate of its own: against itself it is 0.5.
        best = max(singles, key=lambda r: 0.5 if r.quality is None else r.quality)
        results.append(
            replace(
                best, name=BEST_SINGLE, chosen_from=best.name,
                description=f"= {best.name}, the best single model on these items, chosen "
                "after seeing the results (an optimistic baseline)",
            )
        )  # fmt: skip
        notes.append(
            f"best-single is {best.name}: chosen after seeing these results, so comparisons "
            "with it favour it"
        )
        if metric != "win rate" and best.name != baseline:
            for name, _, single in systems:
                if not single:
                    comparison = _compare(name, best.name, metric, by_system, seed)
                    comparisons.append(
                        replace(comparison, baseline=BEST_SINGLE, chosen_after_the_fact=True)
                    )
    notes += [c.length_warning for c in comparisons if c.length_warning]
    if len(comparisons) > 1:
        notes.append(_many_comparisons(comparisons))
    judgments = sum(len(r.get("judgments", [])) for r in records)
    judge_errors = sum(r.get("judge_errors", 0) for r in records)
    if judge_errors:
        notes.append(
            f"the judge gave no verdict in {judge_errors} of {judgments} judgments; those are "
            "left out (see each judgment's text in items.jsonl)"
        )
    failed = {name: sum(not r["ok"] for r in rows) for name, rows in by_system.items()}
    notes += [
        f"{name}: {count} of {items} items failed to answer and count against it"
        for name, count in failed.items()
        if count
    ]
    if repeated:
        notes.append(
            f"{repeated} items repeated an earlier item's prompt and were left out: each "
            "distinct prompt is scored once"
        )
    uncached = {name: sum(r["latency_s"] is None for r in rows) for name, rows in by_system.items()}
    notes += [
        f"{name}: {count} items were answered partly from the cache (a resumed run) and are "
        "left out of the latency percentiles"
        for name, count in uncached.items()
        if count and count < len(by_system[name])
    ]
    timeless = [name for name, count in uncached.items() if count and count == len(by_system[name])]
    if timeless:
        notes.append(
            f"{', '.join(timeless)}: every item was replayed or answered partly from the cache "
            "(a resumed run), so no latency is given"
        )
    return EvalReport(
        suite=suite, description=description, items=items, metric=metric, baseline=baseline,
        systems=results, comparisons=comparisons, notes=notes, records=records,
        repeated=repeated,
    )  # fmt: skip


def _many_comparisons(comparisons: list[Comparison]) -> str:
    """The caveat of many comparisons each made at 95%: some read "better" or "worse" by chance.

    With p-values (accuracy), it gives Bonferroni's threshold for one family-wide test.
    """
    count = len(comparisons)
    text = (
        f"{count} comparisons, each at 95%: where no system truly differs, each still reads "
        f'"better" or "worse" 5% of the time (about {count * 0.05:.1f} of these {count})'
    )
    if all(c.p_value is not None for c in comparisons):
        text += (
            f"; for one family-wide test, hold each McNemar p to 0.05 / {count} = "
            f"{0.05 / count:.4f} (Bonferroni)"
        )
    return text


def _p_clause(p: float) -> str:
    """``= 0.042`` or ``< 0.001``: a p-value as it reads after "McNemar p"."""
    text = p_value_text(p)
    return text if text.startswith("<") else f"= {text}"


def item_quality(record: ItemRecord, metric: Metric) -> float | None:
    """Return one item's quality for `metric`: 1/0 correct, its rating, or its preference."""
    if metric == "accuracy":
        return float(bool(record["correct"]))
    value = record["preference"] if metric == "win rate" else record["score"]
    return None if value is None else float(value)


def _system_result(
    name: str,
    description: str,
    metric: Metric,
    rows: list[ItemRecord],
    is_baseline: bool,
    seed: int,
) -> SystemResult:
    scored = [] if is_baseline and metric == "win rate" else [item_quality(r, metric) for r in rows]
    values = [v for v in scored if v is not None]
    correct = int(sum(values)) if metric == "accuracy" else None
    if correct is not None:
        low, high = wilson(correct, len(values)) if values else (None, None)
    else:
        low, high = bootstrap_mean(values, seed=seed) if values else (None, None)
    latencies = [r["latency_s"] for r in rows if r["latency_s"] is not None]
    costs = [r["cost_usd"] for r in rows]
    return SystemResult(
        name=name, description=description, metric=metric,
        quality=sum(values) / len(values) if values else None, low=low, high=high,
        n=len(values), correct=correct, failures=sum(not r["ok"] for r in rows),
        calls_per_item=_mean([r["calls"] for r in rows]),
        tokens_per_item=_mean([r["tokens"] for r in rows]),
        cost_per_item=None if not costs or None in costs else _mean([c or 0.0 for c in costs]),
        latency_p50_s=percentile(latencies, 0.5) if latencies else None,
        latency_p95_s=percentile(latencies, 0.95) if latencies else None,
        escalation_rate=_mean(escalated) if (escalated := [
            float(flag) for r in rows if (flag := r.get("escalated")) is not None
        ]) else None,
        cut_off=sum(bool(r.get("cut_off")) for r in rows),
    )  # fmt: skip


def _compare(
    name: str, baseline: str, metric: Metric, by_system: dict[str, list[ItemRecord]], seed: int
) -> Comparison:
    base = {r["item"]: r for r in by_system[baseline]}
    pairs = [(r, base[r["item"]]) for r in by_system[name] if r["item"] in base]
    if metric == "win rate":
        return _compare_pairwise(name, baseline, pairs, seed)
    if metric == "accuracy":
        diffs = [float(bool(r["correct"])) - float(bool(b["correct"])) for r, b in pairs]
        p_value = mcnemar_exact(
            sum(bool(b["correct"] and not r["correct"]) for r, b in pairs),
            sum(bool(r["correct"] and not b["correct"]) for r, b in pairs),
        )
    else:
        diffs = [
            r["score"] - b["score"]
            for r, b in pairs
            if r["score"] is not None and b["score"] is not None
        ]
        p_value = None
    if not diffs:
        return Comparison(name, baseline, metric, 0, 0.0, 0.0, 0.0, "not distinguishable")
    low, high = bootstrap_mean(diffs, seed=seed)
    said = verdict(low, high)
    if p_value is not None and p_value >= 0.05:
        said = "not distinguishable"
    return Comparison(
        name, baseline, metric, len(diffs), sum(diffs) / len(diffs), low, high, said, p_value
    )


def _compare_pairwise(
    name: str,
    baseline: str,
    pairs: list[tuple[ItemRecord, ItemRecord]],
    seed: int,
) -> Comparison:
    rows = [r for r, _ in pairs]
    judged = [(r, b) for r, b in pairs if r["preference"] is not None]
    errors = sum(r.get("judge_errors", 0) for r in rows)
    if not judged:
        return Comparison(
            name, baseline, "win rate", 0, 0.5, 0.0, 1.0, "not distinguishable",
            judge_errors=errors,
        )  # fmt: skip
    preferences = [r["preference"] or 0.0 for r, _ in judged]  # None was filtered out above
    raw = sum(preferences) / len(preferences)
    low, high = bootstrap_mean(preferences, seed=seed)
    adjusted = length_adjusted_win_rate(
        preferences, [float(r["length"] - b["length"]) for r, b in judged]
    )
    warning = None
    if abs(adjusted - raw) >= LENGTH_WARNING_POINTS:
        warning = (
            f"{name} vs {baseline}: the length-adjusted win rate ({adjusted:.3f}) differs from "
            f"the raw one ({raw:.3f}) by {abs(adjusted - raw) * 100:.0f} points: the judge may "
            "be rewarding length"
        )
    pairs_judged = sum(r.get("pairs_judged", 0) for r in rows)
    verdicts = sum(r.get("verdicts", 0) for r in rows)
    return Comparison(
        name, baseline, "win rate", len(judged), raw, low, high, verdict(low, high, 0.5),
        consistency=sum(r.get("consistent", 0) for r in rows) / pairs_judged
        if pairs_judged else None,
        first_position_rate=sum(r.get("first_position", 0) for r in rows) / verdicts
        if verdicts else None,
        length_adjusted=adjusted, length_warning=warning, judge_errors=errors,
    )  # fmt: skip


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
