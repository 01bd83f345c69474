"""FLASK in `moa-graph eval`: both file versions, per-skill judging, the report's figures.

The FLASK-format files are written here (a handful of items in FLASK's two layouts; none of
FLASK's text); the systems and the judge are spec-built models over a scripted server.
"""

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from moa_graph import MoAConfigError
from moa_graph.cli import main
from moa_graph.eval import arun_eval, load_suite, write_artifacts
from moa_graph.eval.flask import PROMPT_VERSION, SKILLS, parse_skill_scores
from moa_graph.eval.markdown import render
from tests.scripted_openai_server import Fault, Script, ScriptedOpenAIServer

ITEMS = [
    ("Rewrite this sentence more clearly.", ["Readability", "Conciseness", "Comprehension"],
     ["Humanities"], "formal education knowledge"),
    ("What is 12 * 12?", ["Logical Correctness", "Logical Efficiency", "Conciseness"],
     ["Math"], "simple lifestyle knowledge"),
    ("Explain why the sky is blue.", ["Factuality", "Completeness", "Readability"],
     ["Natural Science", "Culture"], "formal education knowledge"),
    ("Write a function that reverses a list.", ["Logical Correctness", "Logical Robustness",
     "Readability"], ["Coding"], -1),
]  # fmt: skip
SYSTEMS = ["single:openai:good", "single:openai:poor"]


def write_flask(path: Path, version: str = "2023-12") -> str:
    rows = []
    for i, (instruction, skills, domains, difficulty) in enumerate(ITEMS, start=1):
        if version == "2023-12":
            rows.append({"idx": i, "instruction": instruction, "answer": f"reference {i}",
                         "task": "test", "skill": skills, "domain": domains,
                         "difficulty": difficulty})  # fmt: skip
        else:
            rows.append({"question_id": i, "text": instruction, "answer": f"reference {i}",
                         "metrics": skills, "domain_labeled": domains,
                         "difficulty_labeled": difficulty})  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"flask:{path}"


def graded(body: dict[str, Any]) -> tuple[list[str], str]:
    """The skills a judge request asks for and the response it shows."""
    prompt = body["messages"][-1]["content"]
    skills = [s for s in SKILLS if f"\n{s}: " in f"\n{prompt}"]
    response = prompt.split("[Response]\n")[1].split("\n[End of the response]")[0]
    return skills, response


def rule(skill: str, response: str) -> int:
    """The scripted judge's score: the good model 5 on logic skills and 4 elsewhere, poor 2."""
    return (5 if skill.startswith("Logical") else 4) if "good" in response else 2


def script_with(judge: Callable[[dict[str, Any]], str]) -> Script:
    def script(body: dict[str, Any]) -> str:
        if body["model"] == "judge":
            return judge(body)
        return f"{body['model']} answer"

    return script


def fair_judge(body: dict[str, Any]) -> str:
    skills, response = graded(body)
    feedback = "".join(f"{s}: fine. Score: {rule(s, response)}\n" for s in skills)
    # FLASK's form: a dict at the end, keys lower-case with underscores
    scores = {s.lower().replace(" ", "_"): rule(s, response) for s in skills}
    return feedback + str(scores)


@pytest.fixture
def start(openai_upstream: Callable[[Script], ScriptedOpenAIServer]):
    return lambda judge=fair_judge: openai_upstream(script_with(judge))


async def test_per_skill_means_come_from_the_items(start, tmp_path: Path) -> None:
    server = start()
    suite = write_flask(tmp_path / "flask.jsonl")
    report = await arun_eval(suite, SYSTEMS, judge="openai:judge", out=tmp_path / "out")
    assert report.judge_mode == "skills"
    assert report.skills is not None
    cells = {(r.system, r.skill): r for r in report.skills.skills}
    for system, word in (("single:openai:good", "good"), ("single:openai:poor", "poor")):
        for skill in {s for _, skills, _, _ in ITEMS for s in skills}:
            on = [skills for _, skills, _, _ in ITEMS if skill in skills]
            expected = rule(skill, f"{word} answer")
            assert cells[system, skill].mean == expected and cells[system, skill].n == len(on)
    # Readability is on 3 items; the good model leads the poor one by 2 points on each.
    [readability] = [c for c in report.skills.comparisons if c.skill == "Readability"]
    assert (readability.estimate, readability.n, readability.verdict) == (-2.0, 3, "worse")
    # Math holds one item: Logical Correctness 5, Logical Efficiency 5, Conciseness 4.
    groups = {(g.system, g.by, g.group): g for g in report.skills.groups}
    assert groups["single:openai:good", "domain", "Math"].mean == pytest.approx(14 / 3)
    assert groups["single:openai:good", "domain", "Culture"].n == 1  # an item in two domains
    assert {g.group for g in report.skills.groups if g.by == "difficulty"} == {
        "formal education knowledge",
        "simple lifestyle knowledge",
    }  # fmt: skip  (FLASK's -1: unlabeled, left out)
    judged = [b for b in server.requests if b["model"] == "judge"]
    assert len(judged) == len(ITEMS) * 2 and all(b["temperature"] == 0 for b in judged)
    assert all("reference" in b["messages"][-1]["content"] for b in judged)
    write_artifacts(report, tmp_path / "out")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["settings"]["judge_prompt"]["name"] == PROMPT_VERSION
    assert set(results["settings"]["judge_prompt"]["rubrics"]) == set(SKILLS)
    assert results["summary"]["skills"]["skills"][0]["n"] > 0
    assert (tmp_path / "out" / "skills.png").stat().st_size > 10_000
    assert "| Readability |" in render(report)


async def test_both_file_versions_read_the_same_items(tmp_path: Path) -> None:
    current = load_suite(write_flask(tmp_path / "a.jsonl"))
    july = load_suite(write_flask(tmp_path / "b.jsonl", "2023-07"))
    fields = [
        (i.turns, i.skills, i.domains, i.difficulty, i.judge_references) for i in current.items
    ]
    assert fields == [
        (i.turns, i.skills, i.domains, i.difficulty, i.judge_references) for i in july.items
    ]
    assert "2023-07 format" in july.description
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"idx": 1, "instruction": "x", "skill": ["Wit"]}) + "\n")
    with pytest.raises(MoAConfigError, match="line 1: unknown skill 'Wit'"):
        load_suite(f"flask:{bad}")


async def test_a_judge_that_always_says_5_gives_5_everywhere(start, tmp_path: Path) -> None:
    start(lambda body: str(dict.fromkeys(graded(body)[0], 5)))
    report = await arun_eval(write_flask(tmp_path / "f.jsonl"), SYSTEMS, judge="openai:judge")
    assert report.skills is not None
    assert {r.mean for r in report.skills.skills} == {5.0}
    assert {g.mean for g in report.skills.groups} == {5.0}
    assert {s.quality for s in report.systems} == {5.0}
    assert {c.estimate for c in report.skills.comparisons} == {0.0}


async def test_an_unparseable_judge_gives_errors_not_scores(start, tmp_path: Path) -> None:
    start(lambda body: "All three skills are good; I would give it a high score.")
    report = await arun_eval(write_flask(tmp_path / "f.jsonl"), SYSTEMS, judge="openai:judge")
    assert report.skills is not None and report.skills.skills == []
    assert all(r["skill_scores"] == {} and r["score"] is None for r in report.records)
    assert all(r["judge_errors"] == 1 for r in report.records)
    assert any("no verdict in 8 of 8 judgments" in note for note in report.notes)


async def test_rubrics_from_the_users_file_and_resume(start, tmp_path: Path) -> None:
    server = start()
    rubrics = tmp_path / "skillset_description.json"
    rubrics.write_text(json.dumps([{
        "Skill": "Readability", "Criteria": "CUSTOM: is it easy to read?",
        "Scoring": {str(k): f"custom {k}" for k in range(1, 6)},
    }]))  # fmt: skip
    suite = write_flask(tmp_path / "f.jsonl")
    out = tmp_path / "out"
    await arun_eval(suite, SYSTEMS, judge="openai:judge", rubrics=rubrics, out=out)
    prompts = [b["messages"][-1]["content"] for b in server.requests if b["model"] == "judge"]
    assert sum("CUSTOM: is it easy to read?" in p for p in prompts) == 3 * 2  # 3 items, 2 systems
    before = len(server.requests)
    await arun_eval(suite, SYSTEMS, judge="openai:judge", rubrics=rubrics, out=out)
    assert len(server.requests) == before  # answers and judgments come from the files
    with pytest.raises(MoAConfigError, match="rubrics are for flask: suites"):
        await arun_eval("additions", SYSTEMS, n=2, rubrics=rubrics)


def test_parse_skill_scores() -> None:
    skills = ["Logical Correctness", "Readability", "Conciseness"]
    text = "Feedback... {'logical_correctness': 4, 'Readability': '5', 'conciseness': 'N/A'}"
    assert parse_skill_scores(text, skills) == {"Logical Correctness": 4.0, "Readability": 5.0}
    assert parse_skill_scores("{'correctness': 3}", skills) == {"Logical Correctness": 3.0}
    assert parse_skill_scores('early {"readability": 1} last {"readability": 2}', skills) == {
        "Readability": 2.0
    }  # the last dictionary counts
    assert parse_skill_scores("{'readability': 7, 'conciseness': 0}", skills) == {}
    assert parse_skill_scores("no dictionary here", skills) == {}


async def test_a_failed_answer_scores_the_lowest_on_each_skill(
    openai_upstream: Callable[[Script], ScriptedOpenAIServer], tmp_path: Path
) -> None:
    def script(body: dict[str, Any]) -> "str | Fault":
        return Fault(500) if body["model"] == "broken" else script_with(fair_judge)(body)

    server = openai_upstream(script)
    report = await arun_eval(
        write_flask(tmp_path / "f.jsonl"), ["single:openai:good", "single:openai:broken"],
        judge="openai:judge", settings={"retries": 0},
    )  # fmt: skip
    broken = [r for r in report.records if r["system"] == "single:openai:broken"]
    assert all(not r["ok"] and set(r["skill_scores"].values()) == {1.0} for r in broken)
    assert sum(b["model"] == "judge" for b in server.requests) == len(ITEMS)  # good's only


def test_the_cli_prints_the_skill_tables(start, tmp_path: Path, capsys) -> None:
    start()
    status = main(
        ["eval", "--suite", write_flask(tmp_path / "f.jsonl"), "--systems", ",".join(SYSTEMS),
         "--judge", "openai:judge", "--no-progress", "--no-plot"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 0 and "| skill (1-5) |" in printed and "| domain |" in printed
    assert re.search(r"\| Conciseness \| 4\.00 .*n=2\) \| 2\.00", printed)
