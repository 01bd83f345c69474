"""FLASK's figures: means per skill, domain and difficulty, and paired per-skill comparisons.

FLASK (arXiv 2307.10928, section 4) reports the mean 1-5 score of each skill over the items
annotated with it, and the same means per domain and per difficulty level. Here each mean
comes with a 95% percentile-bootstrap interval over items, and each comparison is the paired
difference on the items both systems got a score for, "better" or "worse" only when its
interval excludes zero (as `moa_graph.eval.report` does for the other suites).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from moa_graph.eval.records import ItemRecord
from moa_graph.eval.stats import Verdict, bootstrap_mean, verdict
from moa_graph.eval.suites import Item


@dataclass
class SkillResult:
    """One system's mean score on one skill.

    Attributes:
        system: The system.
        skill: The skill (FLASK's name).
        mean: Mean 1-5 score over the items scored on it.
        low: Lower end of the 95% bootstrap interval over items.
        high: Upper end.
        n: Items annotated with the skill that the judge scored.
    """

    system: str
    skill: str
    mean: float
    low: float
    high: float
    n: int


@dataclass
class SkillComparison:
    """A system against the baseline on one skill, paired over items.

    Attributes:
        system: The system.
        baseline: The baseline.
        skill: The skill.
        n: Items both got a score for.
        estimate: Mean difference, system minus baseline (1-5 points).
        low: Lower end of its 95% paired-bootstrap interval.
        high: Upper end.
        verdict: ``better``, ``worse`` or ``not distinguishable`` at 95%.
    """

    system: str
    baseline: str
    skill: str
    n: int
    estimate: float
    low: float
    high: float
    verdict: Verdict


@dataclass
class GroupMean:
    """One system's mean skill score over the items of one domain or difficulty level.

    Attributes:
        system: The system.
        by: ``"domain"`` or ``"difficulty"``.
        group: The domain or level.
        mean: Mean of every skill score of those items (FLASK's aggregation).
        n: Items in the group (an item with two domains counts in both).
    """

    system: str
    by: str
    group: str
    mean: float
    n: int


@dataclass
class SkillReport:
    """Every per-skill figure of a FLASK evaluation (`skill_report`)."""

    skills: list[SkillResult]
    comparisons: list[SkillComparison]
    groups: list[GroupMean]


def skill_report(
    items: Sequence[Item],
    systems: Sequence[str],
    records: Sequence[ItemRecord],
    baseline: str,
    seed: int,
) -> SkillReport:
    """Compute the per-skill means, comparisons and domain/difficulty means from `records`.

    Args:
        items: The suite's items (their skills, domains and difficulty).
        systems: System names, in report order.
        records: Judged records with ``skill_scores``.
        baseline: The system the others are compared with.
        seed: Seed of the bootstrap resampling.
    """
    skills = list(dict.fromkeys(skill for item in items for skill in item.skills))
    scores = {
        (r["system"], r["item"]): r.get("skill_scores") or {} for r in records
    }  # (system, item) -> skill -> score
    results, comparisons, groups = [], [], []
    for system in systems:
        for skill in skills:
            values = [
                scores[system, item.id][skill]
                for item in items
                if skill in scores.get((system, item.id), {})
            ]
            if values:
                low, high = bootstrap_mean(values, seed=seed)
                results.append(
                    SkillResult(system, skill, sum(values) / len(values), low, high, len(values))
                )
            if system == baseline:
                continue
            diffs = [
                scores[system, item.id][skill] - scores[baseline, item.id][skill]
                for item in items
                if skill in scores.get((system, item.id), {})
                and skill in scores.get((baseline, item.id), {})
            ]
            if diffs:
                low, high = bootstrap_mean(diffs, seed=seed)
                comparisons.append(
                    SkillComparison(
                        system, baseline, skill, len(diffs), sum(diffs) / len(diffs), low, high,
                        verdict(low, high),
                    )
                )  # fmt: skip
        for by in ("domain", "difficulty"):
            members: dict[str, list[Item]] = {}
            for item in items:
                for group in item.domains if by == "domain" else [item.difficulty]:
                    if group is not None:
                        members.setdefault(group, []).append(item)
            for group, in_group in sorted(members.items()):
                pooled = [
                    value
                    for item in in_group
                    for value in scores.get((system, item.id), {}).values()
                ]
                if pooled:
                    groups.append(
                        GroupMean(system, by, group, sum(pooled) / len(pooled), len(in_group))
                    )
    return SkillReport(results, comparisons, groups)
