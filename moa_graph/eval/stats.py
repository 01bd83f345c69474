"""Statistics of an evaluation: intervals, paired tests and a length-adjusted win rate.

The Wilson interval, McNemar's exact test and the bootstrap come from scipy.stats (well kept
and tested); the length adjustment is written here. Items are the unit of resampling: systems
ran on the same items, so differences are paired. Every interval contains its estimate.

Sources: Wilson (1927) score interval; Efron & Tibshirani (1993) percentile bootstrap;
McNemar (1947) exact (binomial) test; the length adjustment follows AlpacaEval 2.0's
length-controlled win rate (Dubois et al., arXiv 2404.04475) reduced to the two terms that
mean something outside its own 805 instructions (docs/notes.md, "Evaluation").
"""

import math
import statistics
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import stats

RESAMPLES = 5000
"""Bootstrap resamples of the items."""

Verdict = Literal["better", "not distinguishable", "worse"]


def wilson(correct: int, n: int) -> tuple[float, float]:
    """Return the 95% Wilson score interval (low, high) of the proportion `correct` / `n`.

    Uses ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``; the interval always
    contains ``correct / n`` (1.0 when every item is right).

    Raises:
        ValueError: `n` is not positive, or `correct` is not between 0 and `n`.
    """
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"wilson needs 0 <= correct <= n and n > 0, got {correct}/{n}")
    interval = stats.binomtest(int(correct), n).proportion_ci(0.95, method="wilson")
    return _containing(correct / n, float(interval.low), float(interval.high))


def bootstrap_mean(
    values: Sequence[float], *, seed: int = 0, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """Return the 95% percentile-bootstrap interval (low, high) of the mean of `values`.

    Paired differences go in as one value per item (system minus baseline), so the same
    function gives the interval of a paired difference. Uses ``scipy.stats.bootstrap``
    (``method="percentile"``) with `resamples` resamples drawn from `seed`.

    Raises:
        ValueError: `values` is empty.
    """
    if not values:
        raise ValueError("bootstrap_mean needs at least one value")
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) == 1 or np.all(data == data[0]):
        return mean, mean  # every resample has the same mean
    result = stats.bootstrap(
        (data,), np.mean, n_resamples=resamples, confidence_level=0.95,
        method="percentile", rng=np.random.default_rng(seed),
    )  # fmt: skip
    interval = result.confidence_interval
    return _containing(mean, float(interval.low), float(interval.high))


def mcnemar_exact(baseline_only: int, system_only: int) -> float:
    """Return McNemar's exact two-sided p-value from the discordant pair counts.

    The exact test is a binomial test of the discordant pairs at 1/2
    (``scipy.stats.binomtest``).

    Args:
        baseline_only: Items the baseline got right and the system wrong.
        system_only: Items the system got right and the baseline wrong.
    """
    n = baseline_only + system_only
    if n == 0:
        return 1.0
    return float(stats.binomtest(system_only, n, 0.5).pvalue)


def p_value_text(p: float) -> str:
    """Return `p` as a report prints it: three decimals, or ``"< 0.001"`` below that."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _containing(estimate: float, low: float, high: float) -> tuple[float, float]:
    """Widen (low, high) by rounding error so that it contains `estimate`."""
    return min(low, estimate), max(high, estimate)


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
