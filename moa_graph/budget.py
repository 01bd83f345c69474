"""How many model calls one MoA run may make, and the ``max_calls`` bound on it; no I/O.

A run calls every proposer of every layer (a spec with ``n`` samples counts ``n`` times; calls
cut off by ``first_k`` are started, so they count), then the aggregator: once for
``synthesize``, up to twice for ``select`` (its fallback to synthesis is a second call), twice for
``analyze`` (the judge's analysis, then the answer or a fallback to synthesis), once at
most for ``vote`` (no call, unless no proposal has an answer and it falls back to synthesis),
and once per window of ``window_size`` proposals for ``sequential`` (Self-MoA-Seq,
arXiv 2502.00674, section 5).
"""

import math

from moa_graph.errors import MoAConfigError


def most_aggregator_calls(mode: str, window_size: int, last_layer: int) -> int:
    """Return the most aggregator calls of one run.

    Args:
        mode: ``MoAContext.aggregator_mode``.
        window_size: ``MoAContext.window_size`` (proposals per step of ``sequential``).
        last_layer: Proposer calls in the last layer (the aggregator's candidates at most).
    """
    if mode in ("select", "analyze"):  # a judge's two calls (or its fallback to synthesis)
        return 2
    if mode == "sequential":
        return max(1, math.ceil(last_layer / window_size))
    return 1


def most_calls(mode: str, window_size: int, layer_sizes: list[int], *, first_stage: int = 0) -> int:
    """Return the most model calls of one run: every proposer call plus the aggregator's.

    Args:
        mode: ``MoAContext.aggregator_mode``.
        window_size: ``MoAContext.window_size``.
        layer_sizes: Proposer calls per layer (samples counted), one entry per round.
        first_stage: Calls of a cascade's first stage (``MoAContext.cascade``), which a run
            that escalates makes before all the others.
    """
    aggregator = most_aggregator_calls(mode, window_size, layer_sizes[-1])
    return first_stage + sum(layer_sizes) + aggregator


def check_max_calls(max_calls: int | None, calls: int, *, setting: str = "max_calls") -> None:
    """Raise when a run of `calls` model calls exceeds `max_calls` (None: no bound).

    Args:
        max_calls: The bound, or None.
        calls: `most_calls` of the run.
        setting: The name of the bound in the message (``max_calls``, or an operator's
            variable such as ``MOA_SERVE_MAX_CALLS``).

    Raises:
        MoAConfigError: The run may make more calls than the bound allows.
    """
    if max_calls is not None and calls > max_calls:
        raise MoAConfigError(
            f"this run may make {calls} model calls (proposers x samples x layers + aggregator) "
            f"but {setting} is {max_calls}: use fewer proposers, samples or rounds, or raise "
            f"{setting}"
        )
