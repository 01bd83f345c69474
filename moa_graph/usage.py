"""Tokens and money: the usage of a message, of a run, per model, and its cost in USD.

Every figure is what the providers reported (``AIMessage.usage_metadata``); a call that
reported nothing is left out of a sum, never guessed. Costs are USD from prices per million
tokens, rounded by one rule (`round_usd`); a call of a model without a price makes a cost
unknown (None).
"""

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from moa_graph.errors import MoAConfigError
from moa_graph.state import Proposal, Usage

Prices = Mapping[str, Mapping[str, float]]
"""USD per million tokens by model label: ``{"openai:gpt-4o-mini": {"input": 0.15,
"output": 0.6}}``."""

USD_PLACES = 8
"""Decimal places of every cost (a hundred-millionth of a dollar)."""


def usage_of(message: BaseMessage) -> Usage | None:
    """Return the token usage an `AIMessage` reports, or None when it reports none."""
    meta = message.usage_metadata if isinstance(message, AIMessage) else None
    if not meta:
        return None
    return Usage(input_tokens=meta["input_tokens"], output_tokens=meta["output_tokens"])


def hit_max_tokens(message: BaseMessage) -> bool:
    """Return True when a reply stopped at its ``max_tokens`` (its text may be cut off).

    Reads the provider's stop reason: OpenAI's ``finish_reason`` ``"length"``, Bedrock
    Converse's ``stopReason`` ``"max_tokens"``.
    """
    meta = message.response_metadata
    return meta.get("finish_reason") == "length" or meta.get("stopReason") == "max_tokens"


def total_usage(usages: Iterable[Usage | None]) -> Usage | None:
    """Return the sum of the reported `usages`, or None when none was reported."""
    reported = [u for u in usages if u is not None]
    if not reported:
        return None
    return Usage(
        input_tokens=sum(u["input_tokens"] for u in reported),
        output_tokens=sum(u["output_tokens"] for u in reported),
    )


def run_usage(output: Mapping[str, Any]) -> Usage | None:
    """Return the tokens of every model call of a run, proposers and aggregator.

    Args:
        output: The graph's output state (``proposals`` and ``aggregation``).

    Returns:
        The sum of the usage the providers reported, or None when none reported any.
    """
    aggregation = output.get("aggregation") or {}
    proposals = output.get("proposals", [])
    return total_usage([*(p["usage"] for p in proposals), aggregation.get("usage")])


def usage_by_model(
    proposals: Iterable[Proposal], aggregation: Mapping[str, Any] | None
) -> dict[str, Usage]:
    """Return the tokens of a run's calls summed per model label."""
    totals: dict[str, Usage] = {}
    calls = [(p["model"], p["usage"]) for p in proposals]
    if aggregation and aggregation.get("model"):
        calls.append((aggregation["model"], aggregation.get("usage")))
    for model, usage in calls:
        if usage:
            total = totals.setdefault(model, Usage(input_tokens=0, output_tokens=0))
            total["input_tokens"] += usage["input_tokens"]
            total["output_tokens"] += usage["output_tokens"]
    return totals


def cost_of(by_model: Mapping[str, Usage], prices: Prices | None) -> float | None:
    """Return the USD cost of `by_model`, or None when a model has no price (never a guess)."""
    if prices is None or any(model not in prices for model in by_model):
        return None
    return round_usd(
        sum(
            u["input_tokens"] * prices[m]["input"] / 1e6
            + u["output_tokens"] * prices[m]["output"] / 1e6
            for m, u in by_model.items()
        )
    )


def sum_costs(costs: Iterable[float | None]) -> float | None:
    """Return the sum of `costs`, or None when any is unknown (None) or there is none."""
    known = list(costs)
    if not known or any(c is None for c in known):
        return None
    return round_usd(sum(c for c in known if c is not None))


def round_usd(value: float) -> float:
    """Round a cost in USD to `USD_PLACES` places: the one rule for every figure."""
    return round(value, USD_PLACES)


def read_prices(path: Path) -> dict[str, Any]:
    """Read a prices file: USD per million input and output tokens by model.

    The file is a JSON object ``{"openai:gpt-4o-mini": {"input": 0.15, "output": 0.6}}``.

    Raises:
        MoAConfigError: The file is missing or not of that shape.
    """
    try:
        prices = json.loads(path.read_text())
        for price in prices.values():
            float(price["input"]), float(price["output"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MoAConfigError(
            f"--prices {path}: expected {{model: {{'input': USD, 'output': USD}}}} per million "
            f"tokens ({exc})"
        ) from None
    return dict(prices)
