"""LLM-as-a-judge with MT-Bench's prompts (pairwise verdicts, 1-10 ratings) and FLASK's form.

The prompts are FastChat's ``judge_prompts.jsonl`` (shipped in ``moa_graph/eval/data/mt_bench``,
Apache-2.0): ``pair-v2`` and ``single-v1``, their multi-turn forms for a second turn, and the
``math`` forms, which show the judge a reference answer, for items that carry one (MT-Bench's
math, reasoning and coding). The judge runs at temperature 0 (Zheng et al., arXiv 2306.05685,
section 3; FastChat ``llm_judge/common.py``).

FLASK's per-skill 1-5 scores use `moa_graph.eval.flask`'s prompt and parser.

Position bias: a pairwise comparison is judged twice, the answers swapped; a verdict that does
not survive the swap is a tie (`combine_orders`).
"""

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from moa_graph.calls import CallPolicy, call_model
from moa_graph.eval.flask import PROMPT_VERSION, parse_skill_scores
from moa_graph.journal import Journal
from moa_graph.models import call_admission, load_chat_model
from moa_graph.spec import ModelSpec, SpecLike, to_model_spec
from moa_graph.state import Usage
from moa_graph.usage import usage_of

PairVerdict = Literal["A", "B", "tie"]

_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


@functools.cache
def judge_prompts() -> dict[str, dict[str, str]]:
    """Return MT-Bench's judge prompts by name (``pair-v2``, ``single-math-v1``, ...)."""
    path = resources.files("moa_graph.eval") / "data" / "mt_bench" / "judge_prompts.jsonl"
    prompts = {}
    for line in path.open(encoding="utf-8"):
        prompt = json.loads(line)
        prompts[prompt["name"]] = prompt
    return prompts


def parse_pairwise(text: str) -> PairVerdict | None:
    """Return the verdict of a pairwise judgment: ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie).

    The first of the three markers found in that order wins, as FastChat reads it; None when
    the text has none.
    """
    if "[[A]]" in text:
        return "A"
    if "[[B]]" in text:
        return "B"
    if "[[C]]" in text:
        return "tie"
    return None


def parse_rating(text: str) -> float | None:
    """Return the 1-10 rating of a single-answer judgment, or None.

    Reads ``[[r]]``, else ``[r]`` (FastChat's two patterns); a rating outside 1-10 is None.
    """
    match = _RATING.search(text) or _RATING_BACKUP.search(text)
    if match is None:
        return None
    rating = float(match.group(1))
    return rating if 1 <= rating <= 10 else None


def combine_orders(first: PairVerdict | None, swapped: PairVerdict | None) -> float | None:
    """Return the system's preference from two judgments of the same pair, in both orders.

    Args:
        first: Verdict with the system as assistant A and the baseline as B.
        swapped: Verdict with the baseline as A and the system as B.

    Returns:
        1.0 when both orders prefer the system, 0.0 when both prefer the baseline, 0.5
        otherwise (a tie in either order, or a verdict that flips with the order: MT-Bench's
        rule); None when either judgment has no verdict.
    """
    if first is None or swapped is None:
        return None
    if first == "A" and swapped == "B":
        return 1.0
    if first == "B" and swapped == "A":
        return 0.0
    return 0.5


def consistent(first: PairVerdict, swapped: PairVerdict) -> bool:
    """Return True when the two orders name the same winner (or both say tie)."""
    mirror: dict[PairVerdict, PairVerdict] = {"A": "B", "B": "A", "tie": "tie"}
    return mirror[first] == swapped


def pairwise_prompt(
    turns: Sequence[str],
    answers_a: Sequence[str],
    answers_b: Sequence[str],
    turn: int,
    references: Sequence[str] | None = None,
) -> tuple[str, list[BaseMessage]]:
    """Return (prompt name, messages) asking the judge to compare two answers to a turn.

    Args:
        turns: The item's user turns.
        answers_a: Assistant A's answers, one per turn so far.
        answers_b: Assistant B's answers.
        turn: 0-based turn to judge; turn 1 shows both whole conversations.
        references: Reference answers per turn, for the reference-guided prompt, or None.
    """
    multi = "-multi-turn" if turn > 0 else ""
    name = f"pair-math-v1{multi}" if references else f"pair-v2{multi}"
    values: dict[str, str] = {}
    if turn == 0:
        values = {"question": turns[0], "answer_a": answers_a[0], "answer_b": answers_b[0]}
    else:
        values = {
            "question_1": turns[0], "question_2": turns[1], "answer_a_1": answers_a[0],
            "answer_a_2": answers_a[1], "answer_b_1": answers_b[0], "answer_b_2": answers_b[1],
        }  # fmt: skip
    return name, _messages(name, values, references)


def single_prompt(
    turns: Sequence[str],
    answers: Sequence[str],
    turn: int,
    references: Sequence[str] | None = None,
) -> tuple[str, list[BaseMessage]]:
    """Return (prompt name, messages) asking the judge to rate one answer to a turn 1-10.

    Arguments as `pairwise_prompt`, with one assistant's `answers`.
    """
    multi = "-multi-turn" if turn > 0 else ""
    name = f"single-math-v1{multi}" if references else f"single-v1{multi}"
    if turn == 0:
        values = {"question": turns[0], "answer": answers[0]}
    else:
        values = {
            "question_1": turns[0], "question_2": turns[1], "answer_1": answers[0],
            "answer_2": answers[1],
        }  # fmt: skip
    return name, _messages(name, values, references)


def _messages(
    name: str, values: dict[str, str], references: Sequence[str] | None
) -> list[BaseMessage]:
    prompt = judge_prompts()[name]
    if references:
        values = {**values, "ref_answer_1": references[0]}
        if len(references) > 1:
            values["ref_answer_2"] = references[1]
    return [
        SystemMessage(prompt["system_prompt"]),
        HumanMessage(prompt["prompt_template"].format(**values)),
    ]


@dataclass(frozen=True)
class Judgment:
    """One judge call.

    Attributes:
        prompt: The judge prompt's name (``pair-v2``, ``single-math-v1``, ...).
        text: The judge's raw reply ("" when the call failed).
        verdict: The parsed pairwise verdict, or None.
        rating: The parsed 1-10 rating, or None.
        error: Why the call failed or gave no verdict, or None.
        usage: Tokens of the call, or None.
        scores: FLASK (`moa_graph.eval.flask`): the 1-5 score of each skill the reply scored,
            or None for other prompts.
    """

    prompt: str
    text: str
    verdict: PairVerdict | None = None
    rating: float | None = None
    error: str | None = None
    usage: Usage | None = None
    scores: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the judgment as a JSON-ready dict."""
        return {
            "prompt": self.prompt, "text": self.text, "verdict": self.verdict,
            "rating": self.rating, "error": self.error, "usage": self.usage,
            "scores": self.scores,
        }  # fmt: skip


class Judge:
    """A chat model that judges, with a cache of its replies so a re-run judges nothing twice.

    Args:
        spec: Any model spec (``"openai:gpt-4o"``, ``"local:smollm2"``, a `ModelSpec`). Its
            temperature defaults to 0, as MT-Bench's judge.
        max_tokens: Most tokens per judgment (default 1024).
        retries: Retries per call on 429, 5xx and timeouts.
        timeout_s: Seconds per attempt, or None.
        rpm: Requests per minute by model text or provider (as ``MoAContext.rpm``).
        cache: JSONL file of earlier judgments, read at start and appended to; None: none.

    Raises:
        MoAConfigError: A bad spec, or the provider's package or credentials are missing.
    """

    def __init__(
        self,
        spec: SpecLike,
        *,
        max_tokens: int = 1024,
        retries: int = 2,
        timeout_s: float | None = 300.0,
        rpm: dict[str, float] | None = None,
        cache: Path | None = None,
    ):
        self.spec: ModelSpec = to_model_spec("judge", spec)
        temperature = 0.0 if self.spec.temperature is None else self.spec.temperature
        self.max_tokens = self.spec.max_tokens or max_tokens
        self.model = load_chat_model(
            self.spec.model, temperature=temperature, max_tokens=self.max_tokens,
            streaming=False, model_kwargs=self.spec.model_kwargs,
        )  # fmt: skip
        self.policy = CallPolicy(
            timeout_s=self.spec.timeout_s or timeout_s,
            retries=retries,
            admission=call_admission(
                self.spec.model, rpm=rpm or {}, tpm={}, max_tokens=self.max_tokens
            ),
        )
        self._settings = json.dumps([self.spec.to_dict(), temperature, self.max_tokens])
        self.cache = Journal(cache) if cache is not None else None
        self._known: dict[str, Judgment] = {}
        for saved in self.cache.records() if self.cache is not None else ():
            try:
                self._known[saved["key"]] = Judgment(**saved["judgment"])
            except (KeyError, TypeError):
                continue  # a record of another version: judged again

    @property
    def name(self) -> str:
        """The judge's label."""
        return self.spec.name

    async def judge(
        self, prompt: str, messages: list[BaseMessage], skills: Sequence[str] = ()
    ) -> Judgment:
        """Ask the judge and parse its verdict (pairwise), rating (single) or skill scores.

        Args:
            prompt: The prompt's name: MT-Bench's (``pair-v2``, ``single-v1``, ...) or
                `moa_graph.eval.flask.PROMPT_VERSION`.
            messages: The judge's messages.
            skills: For FLASK's prompt, the skills the reply must score.

        Never raises for the call: a failure is a `Judgment` with ``error`` set.
        """
        key = hashlib.sha256(
            json.dumps([self._settings, [m.text for m in messages]]).encode()
        ).hexdigest()
        if key in self._known:
            return self._known[key]
        try:
            reply = await call_model(self.model, messages, RunnableConfig(), self.policy)
        except Exception as exc:
            return Judgment(prompt, "", error=f"{type(exc).__name__}: {exc}")
        text = reply.text
        if prompt == PROMPT_VERSION:
            scores = parse_skill_scores(text, skills)
            missing = [skill for skill in skills if skill not in scores]
            judgment = Judgment(
                prompt, text, scores=scores, usage=usage_of(reply),
                error=f"no score from 1 to 5 for {', '.join(missing)} in the reply's last "
                "dictionary" if missing else None,
            )  # fmt: skip
        elif prompt.startswith("pair"):
            verdict = parse_pairwise(text)
            judgment = Judgment(
                prompt, text, verdict=verdict, usage=usage_of(reply),
                error=None if verdict else "no [[A]], [[B]] or [[C]] in the reply",
            )  # fmt: skip
        else:
            rating = parse_rating(text)
            judgment = Judgment(
                prompt, text, rating=rating, usage=usage_of(reply),
                error=None if rating is not None else "no [[rating]] from 1 to 10 in the reply",
            )  # fmt: skip
        self._known[key] = judgment
        if self.cache is not None:
            self.cache.append({"key": key, "judgment": judgment.to_dict()})
        return judgment
