"""The statistics and verdict parsing of `moa-graph eval`, against values computed by hand."""

import math

import pytest

from moa_graph.eval.judge import (
    combine_orders,
    consistent,
    pairwise_prompt,
    parse_pairwise,
    parse_rating,
    single_prompt,
)
from moa_graph.eval.markdown import render
from moa_graph.eval.report import build_report
from moa_graph.eval.stats import (
    bootstrap_mean,
    length_adjusted_win_rate,
    mcnemar_exact,
    p_value_text,
    percentile,
    verdict,
    wilson,
)


def test_wilson_interval_by_hand() -> None:
    # p = 0.5, n = 40, z = 1.96: centre 0.5, half = z*sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 40 + z * z / (4 * 40 * 40)) / (1 + z * z / 40)
    low, high = wilson(20, 40)
    assert low == pytest.approx(0.5 - half) and high == pytest.approx(0.5 + half)
    assert (round(low, 3), round(high, 3)) == (0.352, 0.648)
    # 0 of 10: the interval starts at 0 and ends at z²/(n + z²)
    assert wilson(0, 10) == pytest.approx((0.0, z * z / (10 + z * z)))


def test_mcnemar_exact_by_hand() -> None:
    # 1 vs 6 discordant: 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128
    assert mcnemar_exact(1, 6) == pytest.approx(0.125)
    assert mcnemar_exact(6, 1) == pytest.approx(0.125)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0  # capped at 1
    assert mcnemar_exact(0, 0) == 1.0


def test_bootstrap_interval_by_hand() -> None:
    # Two items, differences 0 and 1: resampled means are 0, 0.5, 1 with probabilities
    # 1/4, 1/2, 1/4, so the 2.5th and 97.5th percentiles are 0 and 1.
    assert bootstrap_mean([0.0, 1.0], seed=1) == (0.0, 1.0)
    assert bootstrap_mean([0.25] * 30, seed=1) == (0.25, 0.25)
    # Seeded: the same items give the same interval.
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5] * 5
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3)
    low, high = bootstrap_mean(values, seed=3)
    assert low < sum(values) / len(values) < high


def test_percentile_and_verdict() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.95) == 5.0
    assert verdict(0.01, 0.2) == "better"
    assert verdict(-0.2, -0.01) == "worse"
    assert verdict(-0.1, 0.1) == "not distinguishable"
    assert verdict(0.45, 0.7, null=0.5) == "not distinguishable"


def test_length_adjusted_win_rate_recovers_the_win_rate_at_zero_length_difference() -> None:
    # Synthetic judge that only rewards length: P(win) = sigmoid(2 * tanh(d / sd)), and the
    # system is mostly longer. Raw win rate is high; at zero difference it is a coin flip.
    diffs = [float(d) for d in range(-100, 301, 5)]
    sd = math.sqrt(sum((d - sum(diffs) / len(diffs)) ** 2 for d in diffs) / len(diffs))
    prefs = [1 / (1 + math.exp(-2 * math.tanh(d / sd))) for d in diffs]
    raw = sum(prefs) / len(prefs)
    assert raw > 0.65
    assert length_adjusted_win_rate(prefs, diffs) == pytest.approx(0.5, abs=1e-3)
    # A real preference of sigmoid(0.8) = 0.690 survives the adjustment.
    prefs = [1 / (1 + math.exp(-(0.8 + 2 * math.tanh(d / sd)))) for d in diffs]
    assert length_adjusted_win_rate(prefs, diffs) == pytest.approx(0.690, abs=2e-3)
    # Equal lengths: nothing to adjust.
    assert length_adjusted_win_rate([1.0, 0.0, 0.5, 1.0], [0.0] * 4) == 0.625


def test_verdict_parsing_follows_mt_bench() -> None:
    assert parse_pairwise("A is more helpful. [[A]]") == "A"
    assert parse_pairwise("Final verdict: [[B]]") == "B"
    assert parse_pairwise("Equally good [[C]]") == "tie"
    assert parse_pairwise("I prefer A") is None
    assert parse_rating("Rating: [[7]]") == 7.0
    assert parse_rating("Rating: [8.5]") == 8.5
    assert parse_rating("[[3]] then [[9]]") == 3.0
    assert parse_rating("Rating: [[11]]") is None
    assert parse_rating("seven") is None


def test_both_orders_combine_into_one_preference() -> None:
    assert combine_orders("A", "B") == 1.0  # the system wins in both orders
    assert combine_orders("B", "A") == 0.0
    assert combine_orders("A", "A") == 0.5  # flips with the order: a tie
    assert combine_orders("tie", "B") == 0.5
    assert combine_orders(None, "B") is None
    assert consistent("A", "B") and consistent("tie", "tie")
    assert not consistent("A", "A") and not consistent("B", "tie")


def test_judge_prompts_are_mt_benchs_with_references_and_second_turns() -> None:
    turns = ["What is 2+2?", "And times 3?"]
    name, messages = pairwise_prompt(turns, ["4"], ["5"], 0)
    assert name == "pair-v2"
    assert "[[A]]" in messages[0].text and "[User Question]\nWhat is 2+2?" in messages[1].text
    assert "Assistant A's Answer]\n4\n" in messages[1].text
    name, messages = pairwise_prompt(turns, ["4", "12"], ["5", "15"], 1, ["4", "12"])
    assert name == "pair-math-v1-multi-turn"
    assert "### Reference answer:\n12" in messages[1].text
    assert "### Assistant B:\n15" in messages[1].text
    name, messages = single_prompt(turns, ["4"], 0, ["4"])
    assert name == "single-math-v1"
    assert "[[rating]]" in messages[1].text and "Reference Answer]\n4\n" in messages[1].text


def _record(item: str, system: str, correct: bool, **more: object) -> dict[str, object]:
    base = {
        "item": item, "system": system, "ok": True, "correct": correct, "score": float(correct),
        "preference": None, "length": 10, "tokens": 100, "calls": 1, "latency_s": 1.0,
        "cost_usd": None,
    }  # fmt: skip
    return {**base, **more}


def test_report_numbers_come_from_the_items() -> None:
    # 10 items: the baseline gets items 0-5 right, the system items 4-9 plus item 0.
    records = []
    for i in range(10):
        records.append(_record(str(i), "base", i <= 5, tokens=60, latency_s=float(i)))
        records.append(_record(str(i), "moa", i >= 4 or i == 0, tokens=400, calls=4))
    report = build_report(
        suite="s", description="d", items=10, metric="accuracy",
        systems=[("base", "one model", True), ("moa", "moa", False)], records=records,
        baseline="base", best_single=True,
    )  # fmt: skip
    base, moa, best = report.systems
    assert (base.correct, moa.correct) == (6, 7)
    assert (base.low, base.high) == pytest.approx(wilson(6, 10))
    assert (moa.tokens_per_item, moa.calls_per_item, base.tokens_per_item) == (400, 4, 60)
    assert base.latency_p50_s == 4.5 and base.latency_p95_s == pytest.approx(8.55)
    assert best.name == "best-single" and best.chosen_from == "base" and best.correct == 6
    [comparison] = report.comparisons  # best-single is the baseline: no second comparison
    assert comparison.estimate == pytest.approx(0.1)
    # discordant: base only on 1, 2, 3; moa only on 6, 7, 8, 9
    assert comparison.p_value == pytest.approx(mcnemar_exact(3, 4))
    assert comparison.verdict == "not distinguishable"
    text = render(report)
    assert "| moa | 0.700 (7/10) |" in text and "chosen after" in text


def test_small_p_values_read_below_a_bound_and_many_comparisons_are_counted() -> None:
    assert (p_value_text(0.0004), p_value_text(0.001), p_value_text(0.0623)) == (
        "< 0.001", "0.001", "0.062",
    )  # fmt: skip
    # 30 items: "base" right on none, three systems right on all: p = 2 * 0.5**30.
    records = [
        _record(str(i), name, name != "base", tokens=10)
        for i in range(30)
        for name in ("base", "a", "b", "c")
    ]
    report = build_report(
        suite="s", description="d", items=30, metric="accuracy",
        systems=[("base", "b", True), ("a", "a", True), ("b", "b", True), ("c", "c", True)],
        records=records, baseline="base", best_single=False,
    )  # fmt: skip
    text = render(report)
    assert "| a vs base | +1.000 | +1.000 to +1.000 | < 0.001 | better |" in text
    assert "McNemar p < 0.001, n = 30" in report.comparisons[0].sentence()
    assert "3 comparisons, each at 95%" in text and "0.05 / 3 = 0.0167 (Bonferroni)" in text
