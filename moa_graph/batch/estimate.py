"""What a batch will cost before it runs: calls, and tokens and USD at most (``--dry-run``)."""

from collections.abc import Iterable
from typing import Any

from moa_graph.batch.rows import Row
from moa_graph.budget import most_calls
from moa_graph.context import MoAContext
from moa_graph.state import FIRST_STAGE


def estimate(
    context: MoAContext, rows: Iterable[Row], samples: int, prices: dict[str, Any] | None
) -> dict[str, Any]:
    """Return the calls of a batch and upper bounds of its tokens and cost.

    Every call is counted at its ``max_tokens`` and the aggregator's worst case
    (`moa_graph.budget.most_calls`); later-layer calls also read the references. The cost uses
    the dearest price among the models (None when one has no price).

    Returns:
        ``rows``, ``samples``, ``runs``, ``calls``, ``calls_per_run``,
        ``input_tokens_at_most``, ``output_tokens_at_most`` and ``cost_usd_at_most``.
    """
    sizes = [sum(s.n for s in context.proposer_specs(k)) for k in range(1, context.rounds + 1)]
    first_stage = sum(s.n for s in context.proposer_specs(FIRST_STAGE))
    per_run = most_calls(context.aggregator_mode, context.window_size, sizes,
                         first_stage=first_stage)  # fmt: skip
    count = prompt_chars = 0
    for row in rows:
        count += 1
        prompt_chars += sum(len(str(m.get("content", ""))) for m in row.messages)
    runs = count * samples
    calls = runs * per_run
    # Upper bounds: every call writes max_tokens; later calls also read the references.
    output_tokens = calls * context.max_tokens
    referenced = runs * (sum(sizes[:-1]) * sizes[-1] + sizes[-1]) * context.max_tokens
    input_tokens = calls * (prompt_chars // max(count, 1)) // 4 + referenced
    return {
        "rows": count,
        "samples": samples,
        "runs": runs,
        "calls": calls,
        "calls_per_run": per_run,
        "input_tokens_at_most": input_tokens,
        "output_tokens_at_most": output_tokens,
        "cost_usd_at_most": _dry_cost(context, input_tokens, output_tokens, prices),
    }


def _dry_cost(
    context: MoAContext, input_tokens: int, output_tokens: int, prices: dict[str, Any] | None
) -> float | None:
    models = {s.name for k in range(1, context.rounds + 1) for s in context.proposer_specs(k)}
    models.add(context.aggregator_spec().name)
    if prices is None or not models <= set(prices):
        return None
    worst_in = max(float(prices[m]["input"]) for m in models)
    worst_out = max(float(prices[m]["output"]) for m in models)
    return round((input_tokens * worst_in + output_tokens * worst_out) / 1e6, 4)
