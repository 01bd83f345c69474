"""The aggregator's modes: synthesize, select, vote, sequential and analyze, free of I/O.

`aggregate` is a generator: it yields each model call it needs as an `AggregatorRequest` and
receives the model's reply, so that one implementation serves the graph's sync and async nodes
(see `moa_graph.answer_nodes`). When two answers are the same answer is
`moa_graph.agreement`'s rule. Sources:

- synthesize: Wang et al., arXiv 2406.04692, section 2.2 and Table 1.
- select (the aggregator picks one proposal, its "selection"): Universal Self-Consistency,
  Chen et al., arXiv 2311.17311, section 3.
- vote: "More Agents Is All You Need", Li et al., arXiv 2402.05120, section 3 (majority vote).
- sequential: Self-MoA-Seq, Li et al., arXiv 2502.00674, section 5.
- analyze (the fusion judge): a typed analysis of the proposals, then the answer written from
  it (`moa_graph.analysis`).
"""

import json
import random
import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from moa_graph.agreement import Candidate, ballots, most_common
from moa_graph.analysis import (
    ANALYSIS_SCHEMA,
    ANALYSIS_TOOL,
    ANALYZE_PROMPT,
    ANSWER_FROM_ANALYSIS_PROMPT,
    criteria_text,
)
from moa_graph.errors import AnswerDoesNotFit
from moa_graph.prompts import SELECT_MOST_CONSISTENT_PROMPT, SEQUENTIAL_BEST_SO_FAR
from moa_graph.references import inject_references, reference_order
from moa_graph.tool_turns import call_arguments, schema_tool

_CHOICE = re.compile(r"response\s*#?\s*(\d+)", re.I)


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
    check_analysis: Callable[[Any], None] | None = None
    """Raises `AnswerDoesNotFit` for a fusion judge's analysis that does not fit its schema; the
    graph passes the JSON Schema check (`moa_graph.structured.check_fits`), which these pure
    modes do not import. None: any object of the analysis tool is taken."""


AggregatorSteps = Generator[AggregatorRequest, AIMessage, Outcome]
"""The calls of one aggregation: each request yielded, each reply sent back."""


def aggregate(
    settings: AggregationSettings,
    messages: Sequence[BaseMessage],
    candidates: Sequence[Candidate],
    rng: random.Random,
) -> AggregatorSteps:
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
    if settings.mode == "vote":
        return (yield from _vote(settings, messages, candidates, rng))
    if settings.mode == "sequential":
        return (yield from _sequential(settings, messages, candidates, rng))
    if settings.mode == "analyze":
        return (yield from _analyze(settings, messages, candidates, rng))
    return (yield from _synthesize(settings, messages, candidates, rng))


def _vote(
    settings: AggregationSettings,
    messages: Sequence[BaseMessage],
    candidates: Sequence[Candidate],
    rng: random.Random,
) -> AggregatorSteps:
    """Return the majority's proposal; with no ballot to count, the aggregator synthesizes.

    Ballots compare tool calls by name and arguments, texts by their extracted answer
    (`moa_graph.agreement`); with ``calls_expected`` only proposals that made a call vote. A
    draw goes to the earliest. The answer repeats the winner's calls, or its text.
    """
    voters = [c for c in candidates if c.tool_calls or not settings.calls_expected]
    winner = most_common(ballots(voters, settings.answer_pattern))
    if winner is None:
        outcome = yield from _synthesize(settings, messages, candidates, rng)
        outcome.fallback = (
            "vote: no proposal made a tool call"
            if settings.calls_expected
            else "vote: no proposal had an answer matching answer_pattern"
        )
        return outcome
    chosen = voters[winner]
    return Outcome(candidate_reply(chosen), "vote", [chosen.index], chosen=chosen.index)


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
    *,
    final: bool = True,
) -> AggregatorSteps:
    """Write an answer from `candidates` (the paper's synthesis); `final`: its tokens stream."""
    order = reference_order(len(candidates), shuffle=settings.shuffle, rng=rng)
    prompt = inject_references(
        messages,
        [candidates[i].text for i in order],
        settings.prompt,
        reference_format=settings.reference_format,
    )
    reply = yield AggregatorRequest(prompt, stream=final, step=step)
    return Outcome(reply, "synthesize", [c.index for c in candidates], replies=[reply])


def _select(
    settings: AggregationSettings,
    messages: Sequence[BaseMessage],
    candidates: Sequence[Candidate],
    rng: random.Random,
) -> AggregatorSteps:
    order = reference_order(len(candidates), shuffle=settings.shuffle, rng=rng)
    prompt = inject_references(
        messages,
        [candidates[i].text for i in order],
        SELECT_MOST_CONSISTENT_PROMPT,
        reference_format=settings.reference_format,
    )
    selection = yield AggregatorRequest(prompt, stream=False, step=0)
    shown = parse_selection(selection.text, len(candidates))
    chosen = None if shown is None else candidates[order[shown]]
    if chosen is None or (settings.calls_expected and not chosen.tool_calls):
        outcome = yield from _synthesize(settings, messages, candidates, rng, step=1)
        outcome.fallback = (
            "select: the aggregator's reply named no response number"
            if chosen is None
            else "select: the chosen proposal made no tool call"
        )
        outcome.judge_text = selection.text
        outcome.replies.insert(0, selection)
        return outcome
    return Outcome(
        candidate_reply(chosen),
        "select",
        [chosen.index],
        chosen=chosen.index,
        judge_text=selection.text,
        replies=[selection],
    )


def _analyze(
    settings: AggregationSettings,
    messages: Sequence[BaseMessage],
    candidates: Sequence[Candidate],
    rng: random.Random,
) -> AggregatorSteps:
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
        analysis = call_arguments(judged.tool_calls, ANALYSIS_TOOL, judged.text)
        if settings.check_analysis is not None:
            settings.check_analysis(analysis)
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
) -> AggregatorSteps:
    windows = sequential_windows(len(candidates), settings.window_size)
    first = [candidates[i] for i in windows[0]]
    # Only the last window's reply is the answer: earlier ones must not stream.
    outcome = yield from _synthesize(settings, messages, first, rng, final=len(windows) == 1)
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
