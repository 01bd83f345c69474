"""Statistics of an evaluation: intervals, paired tests and a length-adjusted win rate.

Small and pure (no numpy, no scipy), so they can be checked by hand. Items are the unit of
resampling: systems ran on the same items, so differences are paired.

Sources: Wilson (1927) score interval; Efron & Tibshirani (1993) percentile bootstrap;
McNemar (1947) exact (binomial) test; the length adjustment follows AlpacaEval 2.0's
length-controlled win rate (Dubois et al., arXiv 2404.04475) reduced to the two terms that
mean something outside its own 805 instructions (../EVAL.md).
"""

import math
import random
import statistics
from collections.abc import Sequence
from typing import Literal

Z95 = 1.959963984540054
"""The normal quantile of a two-sided 95% interval."""

RESAMPLES = 5000
"""Bootstrap resamples of the items."""

Verdict = Literal["better", "not distinguishable", "worse"]


def wilson(correct: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Return the Wilson score interval (low, high) of a proportion `correct` / `n`.

    Raises:
        ValueError: `n` is not positive.
    """
    if n <= 0:
        raise ValueError("wilson needs n > 0")
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(
    values: Sequence[float], *, seed: int = 0, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """Return the 95% percentile-bootstrap interval (low, high) of the mean of `values`.

    Paired differences go in as one value per item (system minus baseline), so the same
    function gives the interval of a paired difference.

    Raises:
        ValueError: `values` is empty.
    """
    if not values:
        raise ValueError("bootstrap_mean needs at least one value")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return _quantile(means, 0.025), _quantile(means, 0.975)


def mcnemar_exact(baseline_only: int, system_only: int) -> float:
    """Return McNemar's exact two-sided p-value from the discordant pair counts.

    Args:
        baseline_only: Items the baseline got right and the system wrong.
        system_only: Items the system got right and the baseline wrong.
    """
    n = baseline_only + system_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(baseline_only, system_only) + 1))
    return min(1.0, 2.0 * tail / float(2**n))


def verdict(low: float, high: float, null: float = 0.0) -> Verdict:
    """Return "better" when the 95% interval lies above `null`, "worse" below, else neither."""
    if low > null:
        return "better"
    if high < null:
        return "worse"
    return "not distinguishable"


def length_adjusted_win_rate(
    preferences: Sequence[float], length_differences: Sequence[float]
) -> float:
    """Return the win rate a logistic fit predicts at zero length difference.

    Fits ``P(win) = sigmoid(a + b * tanh(d / std(d)))`` to the preferences (1 win, 0.5 tie,
    0 loss; soft labels) by Newton's method with a small ridge on ``b``, and returns
    ``sigmoid(a)``. This is AlpacaEval 2.0's length control without its per-instruction
    difficulty term, which needs their data; call it "length-adjusted", not "LC".

    Args:
        preferences: One preference of the system over the baseline per item.
        length_differences: The system's answer length minus the baseline's, per item
            (characters or tokens, the same unit throughout).

    Raises:
        ValueError: The sequences are empty or of different lengths.
    """
    if not preferences or len(preferences) != len(length_differences):
        raise ValueError("length_adjusted_win_rate needs one length difference per preference")
    spread = statistics.pstdev(length_differences)
    if spread == 0:
        return math.fsum(preferences) / len(preferences)
    xs = [math.tanh(d / spread) for d in length_differences]
    a = b = 0.0
    ridge = 1e-3
    for _ in range(100):
        ps = [_sigmoid(a + b * x) for x in xs]
        ga = math.fsum(p - y for p, y in zip(ps, preferences, strict=True))
        gb = math.fsum((p - y) * x for p, y, x in zip(ps, preferences, xs, strict=True)) + ridge * b
        ws = [p * (1 - p) for p in ps]
        haa = math.fsum(ws) + 1e-9
        hab = math.fsum(w * x for w, x in zip(ws, xs, strict=True))
        hbb = math.fsum(w * x * x for w, x in zip(ws, xs, strict=True)) + ridge
        det = haa * hbb - hab * hab
        step_a = (hbb * ga - hab * gb) / det
        step_b = (haa * gb - hab * ga) / det
        a, b = a - step_a, b - step_b
        if abs(step_a) + abs(step_b) < 1e-10:
            break
    return _sigmoid(a)


def percentile(values: Sequence[float], q: float) -> float:
    """Return the `q`-quantile (0 to 1) of `values`, interpolated linearly.

    Raises:
        ValueError: `values` is empty.
    """
    if not values:
        raise ValueError("percentile needs at least one value")
    return _quantile(sorted(values), q)


def _quantile(ordered: Sequence[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)
