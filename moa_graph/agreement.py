"""When two answers are the same answer: extraction, normalization, ballots, majority, agreement.

One rule for every place that compares answers: the vote (`moa_graph.aggregation`), a
cascade's gate (`agreed_answer`), the evaluation's exact-match scoring and its replays. Free
of I/O. Sources: "More Agents Is All You Need", Li et al., arXiv 2402.05120, section 3
(majority vote); extraction and normalization follow DSPy's ``majority``.

- A tool call's ballot is its name and arguments with sorted keys.
- A text's ballot is its extracted answer: the last match of a pattern's first group; with no
  pattern, the last number (`last_number`, then `canonical_number`: ``1,000.0`` is ``1000``)
  when every text compared has a number, else the whole text, normalized (`normalize_text`).
"""

import json
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
"""A number as answers write it: a sign, digits with optional thousands commas, decimals."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass(frozen=True)
class Candidate:
    """A proposal an aggregation may use.

    Its record ``index``, the text to show, and the tool calls it proposed (``name`` and
    ``args`` each), if any.
    """

    index: int
    text: str
    tool_calls: tuple[dict[str, Any], ...] = ()


def last_number(text: str) -> str | None:
    """Return the last number in `text` with its commas dropped, or None (``"5.0"`` stays)."""
    numbers = NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def canonical_number(raw: str) -> str:
    """Return a number's one spelling: ``"5.0"`` and ``"5"`` are ``"5"``, ``"2.50"`` ``"2.5"``."""
    value = float(raw.replace(",", ""))
    return str(int(value)) if value.is_integer() else repr(value)


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation and articles, and collapse spaces (as DSPy's majority)."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def extract_answer(text: str, pattern: str | None, *, numeric: bool) -> str | None:
    """Return the answer a vote counts for `text`, normalized; None when it has none.

    Args:
        text: A proposal.
        pattern: A regular expression whose first group is the answer (its last match counts),
            or None for the default.
        numeric: With no `pattern`: True takes the last number in the text (`canonical_number`),
            False the whole text (`normalize_text`).
    """
    if pattern is not None:
        matches = list(re.finditer(pattern, text))
        if not matches or matches[-1].group(1) is None:
            return None
        return normalize_text(matches[-1].group(1)) or None
    if numeric:
        number = last_number(text)
        return canonical_number(number) if number is not None else None
    return normalize_text(text) or None


def extracted_answers(texts: Sequence[str], pattern: str | None) -> list[str | None]:
    """Each text's extracted answer; numbers when every text has one (see `extract_answer`)."""
    numeric = pattern is None and all(NUMBER.search(t) for t in texts)
    return [extract_answer(t, pattern, numeric=numeric) for t in texts]


def ballots(candidates: Sequence[Candidate], pattern: str | None) -> list[str | None]:
    """Each candidate's ballot: its calls when it made some, else its extracted answer."""
    answers = extracted_answers([c.text for c in candidates], pattern)
    return [
        json.dumps(list(c.tool_calls), sort_keys=True) if c.tool_calls else answer
        for c, answer in zip(candidates, answers, strict=True)
    ]


def most_common(keys: Sequence[str | None]) -> int | None:
    """Return the position of the first of the most common keys (None never counts)."""
    counts = Counter(key for key in keys if key is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(i for i, key in enumerate(keys) if key is not None and counts[key] == top)


def majority(texts: Sequence[str], pattern: str | None) -> int | None:
    """Return the position of the vote's winner among `texts`, or None when none has an answer.

    The winner is the first text whose extracted answer is the most common; a draw goes to the
    earliest.
    """
    return most_common(extracted_answers(texts, pattern))


def agreed_answer(
    candidates: Sequence[Candidate], pattern: str | None, share: float
) -> Candidate | None:
    """Return the answer at least `share` of `candidates` agree on, or None (a cascade's gate).

    Answers compare by their `ballots`; a draw for the most common goes to the earliest;
    answers without an extractable answer count against agreement.
    """
    keys = ballots(candidates, pattern)
    winner = most_common(keys)
    if winner is None or keys.count(keys[winner]) < share * len(candidates):
        return None
    return candidates[winner]
