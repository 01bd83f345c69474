"""Run an evaluation: every system answers every item through the batch runner, then scoring.

Systems run one after another, each over all items with `moa_graph.batch.BatchRunner`
(concurrency, retries, rate limits, resume and cost come from it); with ``out`` set, each
system's records go to ``out/runs/`` and a re-run resumes where it stopped. A second turn
(MT-Bench) is asked with the whole conversation so far: the first question, the system's own
first answer, then the second question, which is what the system's thread holds after the first
turn. Judgments are cached in ``out/judgments.jsonl``.
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moa_graph.batch.progress import Progress
from moa_graph.batch.records import BatchRecord
from moa_graph.batch.rows import Row
from moa_graph.batch.runner import BatchRunner, settings_of
from moa_graph.batch.store import RecordStore
from moa_graph.call_plan import ModelSource
from moa_graph.errors import MoAConfigError
from moa_graph.eval.flask import PROMPT_VERSION, SYSTEM_PROMPT, read_rubrics
from moa_graph.eval.judge import Judge
from moa_graph.eval.judging import JudgeMode, judge_all
from moa_graph.eval.records import item_record
from moa_graph.eval.replay import Replay, check_replay_source, replay_item
from moa_graph.eval.report import EvalReport, Metric, build_report
from moa_graph.eval.skill_report import skill_report
from moa_graph.eval.suites import Item, Suite, distinct, load_suite
from moa_graph.eval.systems import System, file_slug, parse_systems
from moa_graph.sync import run_sync
from moa_graph.usage import Prices, total_usage
from moa_graph.versions import versions


async def arun_eval(
    suite: str | Suite,
    systems: Sequence[str],
    *,
    settings: dict[str, Any] | None = None,
    n: int | None = None,
    seed: int = 7,
    judge: str | None = None,
    judge_mode: JudgeMode = "pairwise",
    baseline: str | None = None,
    out: str | Path | None = None,
    concurrency: int = 8,
    prices: Prices | None = None,
    judge_max_tokens: int = 1024,
    progress: bool = False,
    replays: Sequence[str] = (),
    replay_from: str | None = None,
    rubrics: str | Path | None = None,
) -> EvalReport:
    """Run `systems` on the same items of `suite`, score them, and return the report.

    Args:
        suite: A suite name (`moa_graph.eval.suites.load_suite`) or a `Suite`.
        systems: System names (`moa_graph.eval.systems.parse_systems`): presets,
            ``single:SPEC``, ``best-single``, ``json:FILE``.
        settings: MoAContext fields the systems share (the configured models, max_tokens, ...);
            ``MOA_*`` variables fill the rest.
        n: Only the first `n` distinct items (a prompt that repeats an earlier item's is
            dropped, and the report says how many were).
        seed: Seed of generated suites and of the bootstrap; the runs' seeds derive from it.
        judge: Model spec of the judge; required for judged suites, unused for exact ones.
        judge_mode: ``pairwise`` (against `baseline`, both orders) or ``single`` (1-10).
        baseline: The system the others are compared with (default: the first one); a
            replayed system (``replay:vote:5``) may be the baseline.
        out: Folder for the runs and judgments (resumable), or None to keep nothing.
        concurrency: Runs (and judge calls) in flight at once.
        prices: USD per million tokens by model label, for the cost column.
        judge_max_tokens: Most tokens per judgment.
        progress: Show each system's progress on stderr.
        replays: Votes and cascades to replay from `replay_from`'s recorded samples, with no
            new call (`moa_graph.eval.replay`): ``vote:K``, ``cascade:J:K``,
            ``cascade:J:K:SHARE``. Each is reported as a system ``replay:...``, paired with
            the others on the same items; it has no latency.
        replay_from: The system whose samples the replays read (one layer of one proposer
            spec with ``n`` >= K, aggregator_mode ``vote``); default the first such system.
        rubrics: For a ``flask:`` suite: the user's copy of FLASK's
            ``skillset_description.json``; None uses `moa_graph.eval.flask.SKILLS`. A FLASK
            suite is judged per skill (1-5) whatever `judge_mode` says.

    Returns:
        The `EvalReport`; its ``records`` hold every item's answers, scores and judgments.

    Raises:
        MoAConfigError: A bad suite, system, judge or option; raised before any model call.
    """
    loaded = suite if isinstance(suite, Suite) else load_suite(suite, n=n, seed=seed)
    if isinstance(suite, Suite):  # each prompt once: a repeat would count one answer twice
        loaded = distinct(suite)
        loaded = dataclasses.replace(loaded, items=loaded.items[:n] if n else loaded.items)
    # The seed is part of every system's settings, so each run's seed (derived from its key
    # by the batch runner) changes with it.
    chosen, best_single = parse_systems(list(systems), {**(settings or {}), "seed": seed})
    if loaded.tools:
        chosen = [
            dataclasses.replace(s, context=s.context.with_tools(loaded.tools, loaded.tool_choice))
            for s in chosen
        ]
    if rubrics is not None:
        if loaded.rubrics is None:
            raise MoAConfigError(f"rubrics are for flask: suites; {loaded.name!r} is not one")
        loaded = dataclasses.replace(loaded, rubrics=read_rubrics(Path(rubrics)))
    mode: JudgeMode = "skills" if loaded.rubrics is not None else judge_mode
    names = [s.name for s in chosen]
    plans = [Replay.parse(text) for text in replays]
    baseline = baseline or names[0]
    if baseline not in names + [p.name for p in plans]:
        raise MoAConfigError(f"baseline={baseline!r} is not among the systems {names}")
    if judge_mode not in ("pairwise", "single"):
        raise MoAConfigError(f"judge_mode={judge_mode!r}: use 'pairwise' or 'single'")
    if concurrency < 1:
        raise MoAConfigError("concurrency must be a whole number >= 1")
    if loaded.judged and judge is None:
        raise MoAConfigError(
            f"suite {loaded.name!r} has no exact answers: give a judge model (--judge SPEC)"
        )
    if loaded.judged and mode == "pairwise" and len(chosen) < 2:
        raise MoAConfigError("pairwise judging needs two systems or more: add a baseline")
    for system in chosen:
        _check_models(system)
    source = _replay_source(chosen, plans, replay_from, loaded) if plans else None
    folder = Path(out) if out is not None else None
    if folder is not None:
        (folder / "runs").mkdir(parents=True, exist_ok=True)
    the_judge = None
    if loaded.judged and judge is not None:
        the_judge = Judge(
            judge, max_tokens=judge_max_tokens,
            cache=folder / "judgments.jsonl" if folder else None,
        )  # fmt: skip

    answers = {}
    for system in chosen:
        answers[system.name] = await _answer(
            system, loaded.items, folder, concurrency, prices, progress
        )
    records = [
        item_record(item, name, answers[name][item.id]) for item in loaded.items for name in names
    ]
    if source is not None:
        pattern = source.context.answer_pattern
        records += [
            replay_item(plan, item, plan.name, answers[source.name][item.id][0], pattern)
            for item in loaded.items
            for plan in plans
        ]
    metric: Metric = "accuracy"
    if loaded.checker is not None:
        items = {item.id: item for item in loaded.items}
        for record in records:
            answer = record["answer"] or ""
            score = loaded.checker(items[record["item"]], answer) if record["ok"] else 0.0
            record["score"], record["correct"] = score, score >= 1.0
    else:
        assert the_judge is not None
        metric = "win rate" if mode == "pairwise" else "rating"
        await judge_all(the_judge, mode, loaded, records, baseline, concurrency)
    report = build_report(
        suite=loaded.name, description=loaded.description, items=len(loaded.items),
        repeated=loaded.repeated, metric=metric,
        systems=[(s.name, s.description, s.single) for s in chosen]
        + [(p.name, f"{p.description} from {source.name}", False) for p in plans if source],
        records=records, baseline=baseline, best_single=best_single, seed=seed,
    )  # fmt: skip
    if the_judge is not None:
        report.judge, report.judge_mode = the_judge.name, mode
        report.judge_usage = total_usage(j.get("usage") for r in records for j in r["judgments"])
    report.settings = {
        "suite": loaded.name, "n": len(loaded.items), "seed": seed, "baseline": baseline,
        "judge": the_judge.spec.to_dict() if the_judge else None, "judge_mode": judge_mode,
        "concurrency": concurrency, "prices": dict(prices) if prices else None,
        "systems": {s.name: {"description": s.description, **settings_of(s.context)}
                    for s in chosen},
        "versions": versions("reasoning-gym", "langsmith"),
    }  # fmt: skip
    if mode == "skills" and loaded.judged:
        assert loaded.rubrics is not None
        report.skills = skill_report(
            loaded.items, [s.name for s in report.systems if s.name != "best-single"],
            records, baseline, seed,
        )  # fmt: skip
        report.settings["judge_prompt"] = {
            "name": PROMPT_VERSION, "system": SYSTEM_PROMPT,
            "rubrics": {skill: dataclasses.asdict(r) for skill, r in loaded.rubrics.items()},
        }  # fmt: skip
    return report


def run_eval(suite: str | Suite, systems: Sequence[str], **options: Any) -> EvalReport:
    """Run `arun_eval` to the end (for scripts and notebooks without an event loop).

    Example::

        report = run_eval("arithmetic", ["single:local:smollm2", "self-moa", "vote"], n=40)
        print(render(report))
    """
    return run_sync(arun_eval(suite, systems, **options))


def _replay_source(
    systems: list[System], plans: list[Replay], name: str | None, suite: Suite
) -> System:
    """The system whose samples `plans` replay (checked before any call)."""
    if suite.turns > 1 or suite.tools:
        raise MoAConfigError(
            f"replays read one turn of text answers; suite {suite.name!r} has "
            + ("tools" if suite.tools else f"{suite.turns} turns")
        )
    if name is not None:
        source = next((s for s in systems if s.name == name), None)
        if source is None:
            raise MoAConfigError(f"replay_from={name!r} is not among the systems")
        check_replay_source(source, plans)
        return source
    for system in systems:
        try:
            check_replay_source(system, plans)
        except MoAConfigError:
            continue
        return system
    raise MoAConfigError(
        "no system records the samples the replays read: add one vote of one proposer with "
        f"n >= {max(p.samples for p in plans)}, e.g. a json:FILE system "
        '{"vote-9": {"aggregator_mode": "vote", "proposers": '
        '[{"model": "local:smollm2", "n": 9, "temperature": 0.7}]}}'
    )


def _check_models(system: System) -> None:
    """Create the system's models now, so a missing key or package stops the run before any call.

    Raises:
        MoAConfigError: As `moa_graph.models.load_chat_model`, naming the system.
    """
    try:
        ModelSource(proposers=None, aggregator=None).create_all(system.context)
    except MoAConfigError as exc:
        raise MoAConfigError(f"system {system.name!r}: {exc}") from None


async def _answer(
    system: System,
    items: list[Item],
    folder: Path | None,
    concurrency: int,
    prices: Prices | None,
    progress: bool,
) -> dict[str, list[BatchRecord]]:
    """Return each item's batch records, one per turn answered, for `system`."""
    turns: dict[str, list[BatchRecord]] = {item.id: [] for item in items}
    conversations: dict[str, list[dict[str, str]]] = {item.id: [] for item in items}
    most = max(len(item.turns) for item in items)
    for turn in range(most):
        rows = []
        for index, item in enumerate(items):
            earlier = turns[item.id]
            if turn >= len(item.turns) or (earlier and earlier[-1]["status"] != "ok"):
                continue
            if earlier:
                conversations[item.id].append(
                    {"role": "assistant", "content": earlier[-1]["answer"] or ""}
                )
            conversations[item.id].append({"role": "user", "content": item.turns[turn]})
            rows.append(Row(index, item.id, list(conversations[item.id]), item.turns[turn]))
        output = (
            str(folder / "runs" / f"{file_slug(system.name)}.turn{turn + 1}.jsonl")
            if folder
            else None
        )
        # A re-run resumes the rows that answered and redoes those that failed.
        runner = BatchRunner(
            context=system.context, concurrency=concurrency, output=output, prices=prices,
            retry_failed=True,
        )  # fmt: skip
        label = f"{system.name} turn {turn + 1}" if most > 1 else system.name
        found: dict[str, BatchRecord] = {}
        with Progress(runner.stats, len(rows), enabled=progress, label=label) as shown:
            async for record in runner.run(rows):
                found[record["key"]] = record
                shown.update()
        if output is not None:  # rows resumed from an earlier run
            found = {r["key"]: r for r in RecordStore(output).records()} | found
        for row in rows:
            if (answered := found.get(runner.pair_key(row, 0))) is not None:
                turns[row.id].append(answered)
    return turns
