"""Evaluation suites: items to ask, and how an answer is scored.

Exact-answer suites are scored by a checker (reasoning-gym's own, or exact match after
extraction for ``jsonl:`` files with references); judged suites (MT-Bench, AlpacaEval-format
files, ``jsonl:`` files without references) need a judge model (`moa_graph.eval.judge`).

Suite names (`load_suite`):

- ``arithmetic``: reasoning-gym ``basic_arithmetic``, 2 one-digit terms, ``+`` only, with
  "Give only the final number." (docs/notes.md, "Evaluation": the configuration a 135M model
  is not at floor on).
- ``products``: reasoning-gym ``products``, 2 one-digit factors.
- ``additions``: "Calculate A + B. Give only the final number." with A and B from 10 to 99,
  drawn without repeats (8,100 distinct items), scored on the answer's last number.
- ``tool-calls``: "What is A plus B?" (plus, minus, times, divided by; A and B from 10 to 99,
  32,400 distinct items) answered by a forced call of one ``calculate(op, a, b)`` tool (the
  operation is an argument, so naming the forced tool does not give the answer away), scored
  by exact match of the call's name and arguments.
- ``gsm``: reasoning-gym ``gsm_symbolic``, GSM8K-style word problems from templates.
- ``reasoning-gym:NAME``: any reasoning-gym dataset with its default configuration.
- ``jsonl:FILE``: one object per line, ``prompt`` (or ``turns``, a list of user turns),
  optional ``reference``, ``id`` and ``category``.
- ``mt-bench``: MT-Bench's 80 two-turn questions (FastChat, Apache-2.0; shipped in
  ``moa_graph/eval/data/mt_bench``), judged, reference-guided for math, reasoning and coding.
- ``alpaca:FILE``: an AlpacaEval-format JSON list (or JSONL) of ``{"instruction": ...}``,
  judged. The 805 AlpacaEval instructions are CC BY-NC and not shipped: pass your copy.
- ``flask:FILE``: FLASK's evaluation file (either version), each answer judged 1-5 on its
  item's skills (`moa_graph.eval.flask`). FLASK's data is not shipped: pass your copy.
"""

import dataclasses
import json
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from moa_graph.agreement import NUMBER, extract_answer, last_number
from moa_graph.errors import MoAConfigError
from moa_graph.eval.flask import SKILLS, Rubric, flask_items

Checker = Callable[["Item", str], float]
"""Scores one answer to an item: 1.0 right, 0.0 wrong (partial credit in between)."""

DEFAULT_ITEMS = 100
"""Items drawn from a generated (reasoning-gym) suite when ``n`` is not given."""

REFERENCE_GUIDED = frozenset({"math", "reasoning", "coding"})
"""MT-Bench categories judged against a reference answer (FastChat ``NEED_REF_CATS``)."""

GENERATED: dict[str, tuple[str, dict[str, Any], str]] = {
    "arithmetic": (
        "basic_arithmetic",
        {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ("+",),
         "allow_parentheses": False, "allow_negation": False},
        " Give only the final number.",
    ),
    "products": (
        "products", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}, ""
    ),
    "gsm": ("gsm_symbolic", {}, ""),
}  # fmt: skip
"""Named reasoning-gym suites: (dataset, configuration, text added to each question)."""

MAX_DRAWS = 100_000
"""Most items drawn from a generator while looking for n distinct ones."""

ADDITIONS = "Calculate {a} + {b}. Give only the final number."
"""The ``additions`` suite's question: two-digit numbers, 10 to 99 (8,100 distinct items)."""

CALCULATE: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "calculate",
        "description": "Compute a op b for two numbers; op is one of + - * /.",
        "parameters": {
            "type": "object",
            "properties": {
                "op": {"type": "string", "enum": ["+", "-", "*", "/"]},
                "a": {"type": "number"},
                "b": {"type": "number"},
            },
            "required": ["op", "a", "b"],
        },
    },
}
"""The ``tool-calls`` suite's one tool, as an OpenAI function tool."""

OPERATIONS = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}
"""The ``tool-calls`` suite's operations and how its questions name them."""


@dataclass(frozen=True)
class Item:
    """One evaluation item.

    Attributes:
        id: Unique within the suite.
        turns: The user turns, asked one after another on one conversation (MT-Bench has 2).
        reference: The exact answer an exact-answer suite checks against, else None.
        judge_references: Reference answers per turn shown to the judge (reference-guided
            grading), or None.
        category: The item's category (MT-Bench's 8, a dataset name), or None.
        skills: FLASK: the skills the judge scores this item on (`moa_graph.eval.flask`).
        domains: FLASK: the item's domains (Math, Coding, Humanities, ...).
        difficulty: FLASK: the item's difficulty level, or None.
    """

    id: str
    turns: tuple[str, ...]
    reference: str | None = None
    judge_references: tuple[str, ...] | None = None
    category: str | None = None
    skills: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    difficulty: str | None = None


@dataclass(frozen=True)
class Suite:
    """Items and how their answers are scored.

    Attributes:
        name: The suite as named on the command line.
        items: The items, in order.
        checker: Scores an answer (exact-answer suites), or None when a judge must score.
        description: One line for the report.
        repeated: Items dropped because their prompt (all turns) repeated an earlier item's:
            each distinct prompt is scored once (`distinct`).
        tools: OpenAI function tools every system is given (its answer is then a call), or
            None.
        tool_choice: The tool choice that goes with `tools` (a tool's name forces it).
        rubrics: FLASK suites: the rubric of each skill, and every answer is judged 1-5 on
            its item's skills (`moa_graph.eval.flask`); None for other suites.
    """

    name: str
    items: list[Item]
    checker: Checker | None
    description: str
    repeated: int = 0
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | None = None
    rubrics: Mapping[str, Rubric] | None = None

    @property
    def judged(self) -> bool:
        """True when the answers need a judge."""
        return self.checker is None

    @property
    def turns(self) -> int:
        """The most user turns of any item."""
        return max(len(item.turns) for item in self.items)


def load_suite(name: str, *, n: int | None = None, seed: int = 7) -> Suite:
    """Return the suite `name` (see the module docstring), cut to its first `n` items.

    Args:
        name: A suite name: ``arithmetic``, ``products``, ``gsm``, ``additions``, ``tool-calls``,
            ``reasoning-gym:NAME``, ``jsonl:FILE``, ``mt-bench``, ``alpaca:FILE`` or
            ``flask:FILE``.
        n: Keep the first `n` distinct items; None keeps all (`DEFAULT_ITEMS` for generated
            suites, which draw until they have `n` distinct items).
        seed: Seed of generated (reasoning-gym) suites.

    Returns:
        The suite with each prompt once (`distinct`); ``repeated`` counts the items dropped.

    Raises:
        MoAConfigError: Unknown suite, a missing or malformed file (the message names the line),
            reasoning-gym not installed, no items, or a generated suite that cannot make `n`
            distinct items (the message says how many it can).
    """
    if n is not None and n < 1:
        raise MoAConfigError(f"n={n}: give a whole number of items >= 1")
    kind, _, argument = name.partition(":")
    if name in GENERATED:
        dataset, config, suffix = GENERATED[name]
        suite = _reasoning_gym(name, dataset, config, suffix, n or DEFAULT_ITEMS, seed)
    elif name == "additions":
        suite = _additions(n or DEFAULT_ITEMS, seed)
    elif name == "tool-calls":
        suite = _tool_calls(n or DEFAULT_ITEMS, seed)
    elif kind == "reasoning-gym" and argument:
        suite = _reasoning_gym(name, argument, {}, "", n or DEFAULT_ITEMS, seed)
    elif kind == "jsonl" and argument:
        suite = _jsonl(name, Path(argument))
    elif name == "mt-bench":
        suite = _mt_bench()
    elif kind == "alpaca" and argument:
        suite = _alpaca(name, Path(argument))
    elif kind == "flask" and argument:
        suite = _flask(name, Path(argument))
    else:
        raise MoAConfigError(
            f"suite={name!r} is unknown: use one of "
            f"{sorted([*GENERATED, 'additions', 'tool-calls'])}, "
            "'reasoning-gym:NAME', "
            "'jsonl:FILE', 'mt-bench', 'alpaca:FILE' or 'flask:FILE'"
        )
    suite = distinct(suite)
    items = suite.items[:n] if n is not None else suite.items
    if not items:
        raise MoAConfigError(f"suite {name!r} has no items")
    return dataclasses.replace(suite, items=items)


def distinct(suite: Suite) -> Suite:
    """Return `suite` with each prompt once: an item whose turns repeat an earlier one's goes.

    Two items with one prompt would be asked once by a batch (they share its key) and count
    twice, so a statistic would count one sample twice. ``repeated`` says how many went.
    """
    seen: set[tuple[str, ...]] = set()
    kept = []
    for item in suite.items:
        if item.turns not in seen:
            seen.add(item.turns)
            kept.append(item)
    dropped = len(suite.items) - len(kept)
    return dataclasses.replace(suite, items=kept, repeated=suite.repeated + dropped)


def exact_match(reference: str, answer: str) -> float:
    """Score `answer` against `reference` by exact match after extraction.

    When the reference is a number the answer's last number must equal it; else the normalized
    texts (lower-case, no punctuation or articles) must be equal.
    """
    numeric = NUMBER.fullmatch(reference.strip()) is not None
    expected = extract_answer(reference, None, numeric=numeric)
    got = extract_answer(answer, None, numeric=numeric)
    return float(got is not None and got == expected)


def _additions(size: int, seed: int) -> Suite:
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    if size > len(pairs):
        raise MoAConfigError(
            f"suite 'additions' has {len(pairs)} distinct items; ask for n <= {len(pairs)}"
        )
    items = [
        Item(id=f"{a}+{b}", turns=(ADDITIONS.format(a=a, b=b),), reference=str(a + b))
        for a, b in random.Random(seed).sample(pairs, size)
    ]
    return Suite(
        "additions",
        items,
        lambda item, answer: exact_match(item.reference or "", answer),
        f"two-digit additions (10-99 + 10-99), seed {seed}, scored on the last number",
    )


def call_match(reference: str, answer: str) -> float:
    """Score a tool-call answer: 1.0 when it makes exactly the reference's calls.

    Both are JSON lists of ``{"name", "args"}`` (`moa_graph.eval.records.scored_answer`);
    numbers compare by value (``4 == 4.0``). An answer in text scores 0.0.
    """
    try:
        calls = json.loads(answer)
    except json.JSONDecodeError:
        return 0.0
    return float(calls == json.loads(reference))


def _tool_calls(size: int, seed: int) -> Suite:
    questions = [(op, a, b) for op in OPERATIONS for a in range(10, 100) for b in range(10, 100)]
    if size > len(questions):
        raise MoAConfigError(
            f"suite 'tool-calls' has {len(questions)} distinct items; ask for n <= {len(questions)}"
        )
    items = [
        Item(
            id=f"{a}{op}{b}",
            turns=(f"What is {a} {OPERATIONS[op]} {b}?",),
            reference=json.dumps([{"name": "calculate", "args": {"a": a, "b": b, "op": op}}]),
        )
        for op, a, b in random.Random(seed).sample(questions, size)
    ]
    return Suite(
        "tool-calls",
        items,
        lambda item, answer: call_match(item.reference or "", answer),
        f"calculate(op, a, b) calls for 'What is A plus B?' and the like (4 operations, "
        f"10-99), the tool forced, exact match of the arguments, seed {seed}",
        tools=[CALCULATE],
        tool_choice="calculate",
    )


def _reasoning_gym(
    name: str, dataset: str, config: dict[str, Any], suffix: str, size: int, seed: int
) -> Suite:
    try:
        import reasoning_gym
    except ImportError:
        raise MoAConfigError(
            f"suite {name!r} needs reasoning-gym: pip install 'moa-graph[eval]'"
        ) from None
    draw, found = size, -1
    while True:  # draw more until there are `size` distinct questions, or no more come
        try:
            data = reasoning_gym.create_dataset(dataset, size=draw, seed=seed, **config)
        except (ValueError, KeyError, TypeError) as exc:
            raise MoAConfigError(f"suite {name!r}: reasoning-gym refused it: {exc}") from None
        first: dict[str, int] = {}
        for i, entry in enumerate(data):
            first.setdefault(entry["question"], i)
        if len(first) >= size:
            break
        if len(first) == found or draw >= MAX_DRAWS:
            raise MoAConfigError(
                f"suite {name!r} makes at most {len(first)} distinct items as configured (found "
                f"in {draw} draws); ask for n <= {len(first)}"
            )
        draw, found = min(draw * 2, MAX_DRAWS), len(first)
    entries = {str(i): data[i] for i in sorted(first.values())[:size]}

    def check(item: Item, answer: str) -> float:
        # The last number, not the first: a model that restates the question ("3 + 4 = 7")
        # would be scored on an operand (docs/notes.md, "Evaluation": 3/40 against 20/40).
        entry = entries[item.id]
        numeric = NUMBER.fullmatch(str(entry["answer"]).strip()) is not None
        extracted = last_number(answer) if numeric else answer.strip()
        return float(data.score_answer(extracted or "", entry))

    items = [
        Item(id=i, turns=(entry["question"] + suffix,), reference=str(entry["answer"]))
        for i, entry in entries.items()
    ]
    return Suite(name, items, check, f"reasoning-gym {dataset}, seed {seed}")


def _jsonl(name: str, path: Path) -> Suite:
    items: list[Item] = []
    for number, value in _json_lines(path):
        turns = value.get("turns", [value.get("prompt")])
        if (
            not isinstance(turns, list)
            or not turns
            or not all(isinstance(t, str) and t.strip() for t in turns)
        ):
            raise MoAConfigError(
                f"{path} line {number}: give a non-empty 'prompt' text (or 'turns', a list of "
                "texts)"
            )
        reference = value.get("reference")
        if reference is not None and not isinstance(reference, str | int | float):
            raise MoAConfigError(f"{path} line {number}: 'reference' must be text or a number")
        items.append(
            Item(
                id=str(value.get("id", len(items))),
                turns=tuple(turns),
                reference=None if reference is None else str(reference),
                category=value.get("category"),
            )
        )
    with_reference = sum(item.reference is not None for item in items)
    if 0 < with_reference < len(items):
        missing = next(i for i, item in enumerate(items) if item.reference is None)
        raise MoAConfigError(
            f"{path}: {with_reference} of {len(items)} items have a 'reference' (item {missing} "
            "has none): give every item one (exact match) or none (a judge scores them)"
        )
    _check_unique(path, items)
    if with_reference:
        return Suite(
            name,
            items,
            lambda item, answer: exact_match(item.reference or "", answer),
            f"{path.name}: exact match after extraction",
        )
    return Suite(name, items, None, f"{path.name}: judged")


def _mt_bench() -> Suite:
    data = resources.files("moa_graph.eval") / "data" / "mt_bench"
    questions = [json.loads(line) for line in (data / "question.jsonl").open(encoding="utf-8")]
    references = {}
    for line in (data / "reference_answer_gpt-4.jsonl").open(encoding="utf-8"):
        answer = json.loads(line)
        references[answer["question_id"]] = tuple(answer["choices"][0]["turns"])
    items = [
        Item(
            id=str(q["question_id"]),
            turns=tuple(q["turns"]),
            judge_references=references.get(q["question_id"])
            if q["category"] in REFERENCE_GUIDED
            else None,
            category=q["category"],
        )
        for q in questions
    ]
    return Suite("mt-bench", items, None, "MT-Bench, 80 two-turn questions (FastChat)")


def _alpaca(name: str, path: Path) -> Suite:
    if not path.is_file():
        raise MoAConfigError(f"{name}: {path} not found")
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise MoAConfigError(f"{path} is not JSON: {exc}") from None
        if not isinstance(values, list):
            raise MoAConfigError(f"{path}: expected a JSON list of {{'instruction': ...}}")
        numbered = list(enumerate(values, start=1))
    else:
        numbered = list(_json_lines(path))
    items: list[Item] = []
    for number, value in numbered:
        instruction = value.get("instruction") if isinstance(value, dict) else None
        if not isinstance(instruction, str) or not instruction.strip():
            raise MoAConfigError(f"{path} item {number}: no 'instruction' text")
        items.append(Item(id=str(len(items)), turns=(instruction,), category=value.get("dataset")))
    return Suite(name, items, None, f"{path.name}: AlpacaEval-format instructions, judged")


def _flask(name: str, path: Path) -> Suite:
    values, version = flask_items(path, _json_lines(path))
    items = [
        Item(
            id=v["id"], turns=(v["instruction"],),
            judge_references=(v["answer"],) if v["answer"] else None, skills=v["skills"],
            domains=v["domains"], difficulty=v["difficulty"],
        )
        for v in values
    ]  # fmt: skip
    _check_unique(path, items)
    description = f"{path.name}: FLASK ({version} format), each answer judged 1-5 per skill"
    return Suite(name, items, None, description, rubrics=SKILLS)


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise MoAConfigError(f"suite file {path} not found")
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MoAConfigError(f"{path} line {number} is not JSON: {exc}") from None
            if not isinstance(value, dict):
                raise MoAConfigError(f"{path} line {number}: expected a JSON object")
            yield number, value


def _check_unique(path: Path, items: list[Item]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise MoAConfigError(f"{path}: id {item.id!r} appears twice; ids must be unique")
        seen.add(item.id)
