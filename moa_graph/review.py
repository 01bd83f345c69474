"""Human review before aggregation (``MoAContext.review``): what is shown, what is accepted.

The graph pauses with LangGraph's ``interrupt(review_request(...))`` after the last layer; the
caller resumes with ``Command(resume=decision)``, where decision is one of:

- ``"keep"``, ``True`` or ``{}``: keep every proposal (LangGraph 1.2 cannot resume with
  ``None``);
- ``{"drop": [1, 2]}``: leave out the proposals with these ``index`` values;
- ``{"keep": [0, 3]}``: use only these;
- ``{"edit": {"0": "better text"}}``: replace a proposal's text (with ``drop`` or ``keep``).

The aggregator then sees only what the reviewer kept, with the edits.
"""

from collections.abc import Sequence
from typing import Any

from moa_graph.state import Proposal, Review

HOW_TO_RESUME = (
    "Resume with Command(resume=...): 'keep' to keep all, {'drop': [index, ...]}, "
    "{'keep': [index, ...]}, and/or {'edit': {'index': 'new text'}}."
)


def review_request(proposals: Sequence[Proposal], layer: int, error: str | None) -> dict[str, Any]:
    """Return the interrupt's value: the last layer's answers and how to resume.

    Args:
        proposals: This turn's records.
        layer: The last proposer layer.
        error: Why the previous resume value was refused, or None.
    """
    shown = [
        {"index": p["index"], "model": p["model"], "sample": p["sample"], "content": p["content"]}
        for p in proposals
        if p["layer"] == layer and p["content"] is not None
    ]
    request: dict[str, Any] = {"layer": layer, "proposals": shown, "how_to_resume": HOW_TO_RESUME}
    if error:
        request["error"] = error
    return request


def parse_decision(decision: object, answered: Sequence[int]) -> Review | str:
    """Return the `Review` a resume value asks for, or the reason it is refused.

    Args:
        decision: The value given to ``Command(resume=...)``.
        answered: ``index`` of each proposal shown to the reviewer.

    Returns:
        A `Review`, or an error text naming the bad key and the fix.
    """
    if decision is None or decision is True or decision == "keep" or decision == {}:
        return Review(kept=list(answered), edited={})
    if not isinstance(decision, dict) or not set(decision) <= {"drop", "keep", "edit"}:
        return f"review decision {decision!r} is not understood. {HOW_TO_RESUME}"
    if "drop" in decision and "keep" in decision:
        return "give either 'drop' or 'keep', not both"
    chosen = decision.get("keep", decision.get("drop", []))
    edits = decision.get("edit", {})
    if not isinstance(chosen, list) or not isinstance(edits, dict):
        return "'drop' and 'keep' take a list of indices, 'edit' a dict {index: text}"
    unknown = [i for i in [*chosen, *edits] if _as_index(i) not in answered]
    if unknown:
        return f"no proposal has index {unknown}: choose from {list(answered)}"
    picked = {_as_index(i) for i in chosen}
    kept = [i for i in answered if (i in picked) == ("keep" in decision)]
    if not kept:
        return "the review left no proposal: keep at least one"
    if any(not isinstance(text, str) or not text.strip() for text in edits.values()):
        return "an edited text is empty: give the new text, or drop the proposal"
    return Review(kept=kept, edited={str(_as_index(i)): text for i, text in edits.items()})


def _as_index(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
