"""The aggregator's modes: synthesize, select, vote and sequential, free of I/O.

`aggregate` is a generator: it yields each model call it needs as an `AggregatorRequest` and
receives the model's reply, so that one implementation serves the graph's sync and async nodes
(see `moa_graph.nodes`). Sources:

- synthesize: Wang et al., arXiv 2406.04692, section 2.2 and Table 1.
- select: Universal Self-Consistency, Chen et al., arXiv 2311.17311, section 3.
- vote: "More Agents Is All You Need", Li et al., arXiv 2402.05120, section 3 (majority vote);
  extraction and normalization follow DSPy's ``majority``.
- sequential: Self-MoA-Seq, Li et al., arXiv 2502.00674, section 5.
"""

import json
import random
import re
import string
from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from moa_graph.analysis import (
    ANALYSIS_SCHEMA,
    ANALYSIS_TOOL,
    ANALYZE_PROMPT,
    ANSWER_FROM_ANALYSIS_PROMPT,
    criteria_text,
)
from moa_graph.prompts import SELECT_MOST_CONSISTENT_PROMPT, SEQUENTIAL_BEST_SO_FAR
from moa_graph.references import inject_references, reference_order
from moa_graph.structured import AnswerDoesNotFit, answer_object, schema_tool

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
_CHOICE = re.compile(r"response\s*#?\s*(\d+)", re.I)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass(frozen=True)
class Candidate:
    """A proposal the aggregator may use.

    Its record ``index``, the text to show, and the tool calls it proposed (``name`` and
    ``args`` each), if any.
    """

    index: int
    text: str
    tool_calls: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class AggregatorRequest:
    """One aggregator call the mode asks for.

    Attributes:
        messages: The prompt.
        stream: True when the reply is the final answer, so its tokens may stream.
        step: 0-based number of the call within this aggregation (its seed's sample number).
    """

    messages: list[BaseMessage]
    stream: bool
    step: int
    tool: dict[str, Any] | None = None
    """A tool to force on this call (its arguments are the reply), e.g. the judge's analysis."""
    temperature: float | None = None
    """A temperature for this call instead of the aggregator's (the judge's analysis: 0)."""
    max_tokens: int | None = None
    """Most tokens of this call instead of the aggregator's (the judge's analysis)."""


@dataclass
class Outcome:
    """The answer and how it was produced (see `moa_graph.state.Aggregation`)."""

    answer: AIMessage
    mode: str
    used: list[int]
    chosen: int | None = None
    fallback: str | None = None
    judge_text: str | None = None
    replies: list[AIMessage] = field(default_factory=list)
    analysis: dict[str, Any] | None = None


@dataclass(frozen=True)
class AggregationSettings:
    """What the modes read from `MoAContext`."""

    mode: str
    prompt: str
    reference_format: str
    shuffle: bool
    answer_pattern: str | None
    window_size: int
    judge_criteria: str | None = None
    judge_max_tokens: int = 768
    calls_expected: bool = False
    """The proposers were given the tools with a forced choice: a proposal without a tool call
    did not answer in the asked form, so ``vote`` does not count it and ``select`` does not keep
    it (structured output through ``select`` and ``vote``)."""


Steps = Generator[AggregatorRequest, AIMessage, Outcome]


def aggregate(
    settings: AggregationSettings,
    messages: Sequence[BaseMessage],
    candidates: Sequence[Candidate],
    rng: random.Random,
) -> Steps:
    """Produce the final answer from `candidates` with the mode of `settings`.

    Yields:
        Each `AggregatorRequest` to make; send the model's reply back with ``generator.send``.

    Returns:
        The `Outcome`: the answer message, the mode that produced it, and which candidates
        went into it.

    Raises:
        ValueError: `candidates` is empty.
    """
    if not candidates:
        raise ValueError("aggregate needs at least one candidate")
    if settings.mode == "select":
        return (yield from _select(settings, messages, candidates, rng))
    if settings.mode == "vote" and (
        settings.calls_expected or any(c.tool_calls for c in candidates)
    ):
        return (yield from _vote_calls(settings, messages, candidates, rng))
    if settings.mode == "vote":
        winner = majority([c.text for c in candidates], settings.answer_pattern)
        if winner is None:
            outcome = yield from _synthesize(settings, messages, candidates, rng)
            outcome.fallback = "vote: no proposal had an answer matching answer_pattern"
            return outcome
        chosen = candidates[winner]
        return Outcome(candidate_reply(chosen), "vote", [chosen.index], chosen=chosen.index)
    if settings.mode == "sequential":
        return (yield from _sequential(settings, messages, candidates, rng))
    if settings.mode == "analyze":
        return (yield from _analyze(settings, messages, candidates, rng))
    return (yield from _synthesize(settings, messages, candidates, rng))


def _vote_calls(
    settings: AggregationSettings,
    messages: Sequence[BaseMessage],
    candidates: Sequence[Candidate],
    rng: random.Random,
) -> Steps:
    """Return the vote over proposed tool calls (ensemble function calling).

    The most common proposal wins, a call being its name and its arguments with sorted keys (a
    text answer counts as its normalized text, unless ``calls_expected``: then only calls
    count); a draw goes to the earliest. The answer makes the winner's calls (or says its
    text). With no call to count, the aggregator synthesizes.
    """
    ballots = [c for c in candidates if c.tool_calls or not settings.calls_expected]
    if not ballots:
        outcome = yield from _synthesize(settings, messages, candidates, rng)
        outcome.fallback = "vote: no proposal made a tool call"
        return outcome
    keys = [
        json.dumps(list(c.tool_calls), sort_keys=True) if c.tool_calls else normalize_text(c.text)
        for c in ballots
    ]
    counts = Counter(keys)
    top = max(counts.values())
    chosen = next(c for c, key in zip(ballots, keys, strict=True) if counts[key] == top)
    return Outcome(candidate_reply(chosen), "vote", [chosen.index], chosen=chosen.index)


def agreed_answer(
    candidates: Sequence[Candidate], pattern: str | None, share: float
) -> Candidate | None:
    """Return the answer at least `share` of `candidates` agree on, or None (a cascade's gate).

    Answers compare as a vote compares them: tool calls by name and arguments with sorted keys,
    texts by their extracted answer (`majority`'s rule). A draw for the most common answer
    goes to the earliest; answers without an extractable answer count against agreement.
    """
    if not candidates:
        return None
    answers = _answers([c.text for c in candidates], pattern)
    keys = [
        json.dumps(list(c.tool_calls), sort_keys=True) if c.tool_calls else answer
        for c, answer in zip(candidates, answers, strict=True)
    ]
    counts = Counter(key for key in keys if key is not None)
    if not counts or max(counts.values()) < share * len(candidates):
        return None
    top = max(counts.values())
    return next(
        c for c, key in zip(candidates, keys, strict=True) if key is not None and counts[key] == top
    )


def candidate_reply(candidate: Candidate) -> AIMessage:
    """The answer that repeats `candidate`: its tool calls, or its text when it made none."""
    calls = [
        {"name": call["name"], "args": call["args"], "id": f"call_{candidate.index}_{i}",
         "type": "tool_call"}
        for i, call in enumerate(candidate.tool_calls)
    ]  # fmt: skip
    return AIMessage("" if calls else candidate.text, tool_calls=calls)


def _synthesize(
    settings: AggregationSettings,
    messages: Sequence[BaseMessage],
    candidates: Sequence[Candidate],
    rng: random.Random,
    step: int = 0,
) -> Steps:
    order = reference_order(len(candidates), shuffle=settings.shuffle, rng=rng)
    prompt = inject_references(
        messages,
        [candidates[i].text for i in order],
        settings.prompt,
        reference_format=settings.reference_format,
    )
    reply = yield AggregatorRequest(prompt, stream=True, step=step)
    return Outcome(reply, "synthesize", [c.index for c in candidates], replies=[reply])


def _select(
    settings: AggregationSettings,
    messages: Sequence[BaseMessage],
    candidates: Sequence[Candidate],
    rng: random.Random,
) -> Steps:
    order = reference_order(len(candidates), shuffle=settings.shuffle, rng=rng)
    prompt = inject_references(
        messages,
        [candidates[i].text for i in order],
        SELECT_MOST_CONSISTENT_PROMPT,
        reference_format=settings.reference_format,
    )
    judge = yield AggregatorRequest(prompt, stream=False, step=0)
    shown = parse_selection(judge.text, len(candidates))
    chosen = None if shown is None else candidates[order[shown]]
    if chosen is None or (settings.calls_expected and not chosen.tool_calls):
        outcome = yield from _synthesize(settings, messages, candidates, rng, step=1)
        outcome.fallback = (
            "select: the aggregator's reply named no response number"
            if chosen is None
            else "select: the chosen proposal made no tool call"
        )
        outcome.judge_text = judge.text
        outcome.replies.insert(0, judge)
        return outcome
    return Outcome(
        candidate_reply(chosen),
        "select",
        [chosen.index],
        chosen=chosen.index,
        judge_text=judge.text,
        replies=[judge],
    )


def _analyze(
    settings: AggregationSettings,
    messages: Sequence[BaseMessage],
    candidates: Sequence[Candidate],
    rng: random.Random,
) -> Steps:
    """The fusion judge: a typed analysis at temperature 0, then the answer written from it.

    An analysis that does not come back as a valid object falls back to synthesis (the record
    says so); the judge's two calls are steps 0 and 1.
    """
    order = reference_order(len(candidates), shuffle=settings.shuffle, rng=rng)
    shown = [candidates[i].text for i in order]
    criteria = criteria_text(settings.judge_criteria)
    prompt = inject_references(
        messages,
        shown,
        ANALYZE_PROMPT.format(count=len(shown), criteria=criteria),
        reference_format=settings.reference_format,
    )
    tool = schema_tool(ANALYSIS_SCHEMA, ANALYSIS_TOOL)
    judged = yield AggregatorRequest(
        prompt, stream=False, step=0, tool=tool, temperature=0.0,
        max_tokens=settings.judge_max_tokens,
    )  # fmt: skip
    try:
        analysis = answer_object(judged, ANALYSIS_TOOL, ANALYSIS_SCHEMA)
    except AnswerDoesNotFit as exc:
        outcome = yield from _synthesize(settings, messages, candidates, rng, step=1)
        outcome.fallback = f"analyze: the analysis did not parse ({str(exc)[:200]})"
        outcome.replies.insert(0, judged)
        return outcome
    final = inject_references(
        messages,
        shown,
        ANSWER_FROM_ANALYSIS_PROMPT.format(
            criteria=criteria, analysis=json.dumps(analysis, indent=1, ensure_ascii=False)
        ),
        reference_format=settings.reference_format,
    )
    reply = yield AggregatorRequest(final, stream=True, step=1)
    return Outcome(reply, "analyze", [c.index for c in candidates], replies=[judged, reply],
                   analysis=analysis)  # fmt: skip


def _sequential(
    settings: AggregationSettings,
    messages: Sequence[BaseMessage],
    candidates: Sequence[Candidate],
    rng: random.Random,
) -> Steps:
    windows = sequential_windows(len(candidates), settings.window_size)
    first = [candidates[i] for i in windows[0]]
    outcome = yield from _synthesize(settings, messages, first, rng)
    for step, window in enumerate(windows[1:], start=1):
        best = outcome.answer.text
        new = [candidates[i].text for i in window]
        order = reference_order(len(new), shuffle=settings.shuffle, rng=rng)
        prompt = inject_references(
            messages,
            [best, *(new[i] for i in order)],
            settings.prompt + "\n\n" + SEQUENTIAL_BEST_SO_FAR.format(best=best),
            reference_format=settings.reference_format,
        )
        reply = yield AggregatorRequest(prompt, stream=step == len(windows) - 1, step=step)
        outcome.answer = reply
        outcome.replies.append(reply)
    outcome.mode = "sequential"
    outcome.used = [c.index for c in candidates]
    return outcome


def sequential_windows(count: int, window_size: int) -> list[list[int]]:
    """Split positions 0..count-1 into the windows of Self-MoA-Seq.

    The first window is synthesized alone; each later one is shown next to the best answer so
    far. E.g. ``sequential_windows(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]``.
    """
    return [list(range(i, min(i + window_size, count))) for i in range(0, count, window_size)]


def parse_selection(text: str, count: int) -> int | None:
    """Return the 0-based position a select reply names, or None when it names none validly.

    Reads the first ``Response N`` (case-insensitive), else a reply that is only a number.
    N must be between 1 and `count`.
    """
    match = _CHOICE.search(text)
    raw = match.group(1) if match else text.strip().rstrip(".")
    if not raw.isdigit():
        return None
    number = int(raw)
    return number - 1 if 1 <= number <= count else None


def extract_answer(text: str, pattern: str | None, *, numeric: bool) -> str | None:
    """Return the answer a vote counts for `text`, normalized; None when it has none.

    Args:
        text: A proposal.
        pattern: A regular expression whose first group is the answer (its last match counts),
            or None for the default.
        numeric: With no `pattern`: True takes the last number in the text (commas dropped,
            ``5.0`` read as ``5``), False the whole text.
    """
    if pattern is not None:
        matches = list(re.finditer(pattern, text))
        if not matches or matches[-1].group(1) is None:
            return None
        return normalize_text(matches[-1].group(1)) or None
    if numeric:
        numbers = _NUMBER.findall(text)
        return _normalize_number(numbers[-1]) if numbers else None
    return normalize_text(text) or None


def majority(texts: Sequence[str], pattern: str | None) -> int | None:
    """Return the position of the vote's winner among `texts`, or None when none has an answer.

    The winner is the first text whose extracted answer is the most common; a draw goes to the
    earliest. With no `pattern`, answers are the last number when every text has one, else the
    whole normalized text (lower-case, no punctuation, articles or extra spaces).
    """
    answers = _answers(texts, pattern)
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(i for i, a in enumerate(answers) if a is not None and counts[a] == top)


def _answers(texts: Sequence[str], pattern: str | None) -> list[str | None]:
    """Each text's extracted answer, as a vote compares them (see `majority`)."""
    numeric = pattern is None and all(_NUMBER.search(t) for t in texts)
    return [extract_answer(t, pattern, numeric=numeric) for t in texts]


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation and articles, and collapse spaces (as DSPy's majority)."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _normalize_number(raw: str) -> str:
    value = float(raw.replace(",", ""))
    return str(int(value)) if value.is_integer() else repr(value)
