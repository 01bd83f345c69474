"""The report as Markdown: the systems table, the comparisons table and one line per verdict.

It is what ``moa-graph eval`` prints and ``summary.md`` holds; every figure comes from
`moa_graph.eval.report`, which computes them from the items.
"""

from typing import TYPE_CHECKING

from moa_graph.eval.stats import p_value_text

if TYPE_CHECKING:
    from moa_graph.eval.report import EvalReport, SystemResult
    from moa_graph.eval.skill_report import SkillReport


def render(report: "EvalReport") -> str:
    """Return the summary of `report` as Markdown: tables, verdict lines and notes."""
    judge = f", judge {report.judge} ({report.judge_mode})" if report.judge else ""
    lines = [
        f"## moa-graph eval: {report.suite}, {report.items} distinct items",
        "",
        f"{report.description}; metric: {report.metric}; baseline: {report.baseline}{judge}.",
        "",
        f"| system | {report.metric} | 95% CI | failed | calls / item | tokens / item "
        "| cost / item | p50 s | p95 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report.systems:
        quality = _quality(s, s.name == report.baseline)
        lines.append(
            f"| {s.name} | {quality} | {_interval(s.low, s.high)} | {s.failures} "
            f"| {s.calls_per_item:.1f} | {s.tokens_per_item:.0f} | {_cost(s.cost_per_item)} "
            f"| {_seconds(s.latency_p50_s)} | {_seconds(s.latency_p95_s)} |"
        )
    if report.comparisons and report.metric == "win rate":
        lines += [
            "",
            "| system vs baseline | win rate | 95% CI | length-adjusted | position "
            "consistency | first-position rate | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in report.comparisons:
            lines.append(
                f"| {c.system} vs {c.baseline} | {c.estimate:.3f} | "
                f"{_interval(c.low, c.high)} | {_number(c.length_adjusted)} | "
                f"{_number(c.consistency)} | {_number(c.first_position_rate)} | {c.verdict} |"
            )
    elif report.comparisons:
        lines += [
            "",
            "| system vs baseline | difference | 95% CI | McNemar p | verdict |",
            "|---|---|---|---|---|",
        ]
        for c in report.comparisons:
            lines.append(
                f"| {c.system} vs {c.baseline} | {c.estimate:+.3f} | "
                f"{_interval(c.low, c.high, signed=True)} | {_p(c.p_value)} "
                f"| {c.verdict} |"
            )
    if report.skills is not None:
        lines += _skill_tables(report.skills)
    lines.append("")
    lines += [f"- {c.sentence()}" for c in report.comparisons]
    lines += [
        f"- {s.name}: the cascade escalated to the MoA on {s.escalation_rate:.0%} of the items"
        for s in report.systems
        if s.escalation_rate is not None
    ]
    lines += [
        f"- {s.name}: {s.cut_off} of {report.items} answers stopped at max_tokens and may be "
        "cut off (scored as they are; raise --max-tokens)"
        for s in report.systems
        if s.cut_off
    ]
    if report.judge_usage:
        tokens = report.judge_usage["input_tokens"] + report.judge_usage["output_tokens"]
        calls = sum(len(r.get("judgments", [])) for r in report.records)
        lines.append(f"- Judge: {calls} calls, {tokens} tokens (not in the systems' figures).")
    lines += [f"- Note: {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _skill_tables(skills: "SkillReport") -> list[str]:
    """FLASK: mean per skill (95% CI, items) per system, per-skill comparisons, groups."""
    systems = list(dict.fromkeys(r.system for r in skills.skills))
    cells = {(r.system, r.skill): r for r in skills.skills}
    names = list(dict.fromkeys(r.skill for r in skills.skills))
    lines = _header("skill (1-5)", systems)
    for skill in names:
        row = [
            f"{c.mean:.2f} ({c.low:.2f} to {c.high:.2f}, n={c.n})"
            if (c := cells.get((system, skill)))
            else "-"
            for system in systems
        ]
        lines.append(f"| {skill} | " + " | ".join(row) + " |")
    if skills.comparisons:
        lines += [
            "",
            "| system vs baseline | skill | difference | 95% CI | items | verdict |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {c.system} vs {c.baseline} | {c.skill} | {c.estimate:+.2f} | "
            f"{_interval(c.low, c.high, signed=True)} | {c.n} | {c.verdict} |"
            for c in skills.comparisons
        ]
    for by in ("domain", "difficulty"):
        means = {(g.system, g.group): g for g in skills.groups if g.by == by}
        groups = list(dict.fromkeys(g.group for g in skills.groups if g.by == by))
        if not groups:
            continue
        lines += _header(by, systems)
        for group in groups:
            row = [
                f"{g.mean:.2f} (n={g.n})" if (g := means.get((system, group))) else "-"
                for system in systems
            ]
            lines.append(f"| {group} | " + " | ".join(row) + " |")
    return lines


def _header(first: str, systems: list[str]) -> list[str]:
    """A blank line, then the head of a table with one column per system."""
    return ["", f"| {first} | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]


def _quality(s: "SystemResult", is_baseline: bool) -> str:
    if s.quality is None:
        return "baseline" if s.metric == "win rate" and is_baseline else "-"
    if s.correct is not None:
        return f"{s.quality:.3f} ({s.correct}/{s.n})"
    return f"{s.quality:.3f}" if s.metric == "win rate" else f"{s.quality:.2f}"


def _interval(low: float | None, high: float | None, *, signed: bool = False) -> str:
    if low is None or high is None:
        return "-"
    return f"{low:+.3f} to {high:+.3f}" if signed else f"{low:.3f} to {high:.3f}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _p(value: float | None) -> str:
    return "-" if value is None else p_value_text(value)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cost(value: float | None) -> str:
    return "-" if value is None else f"${value:.5f}"
