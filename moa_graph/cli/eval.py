"""``moa-graph eval --suite SUITE --systems A,B,...``: the comparison, printed and saved.

Exit status: 0 when the evaluation ran (whatever it found, and even when some items failed to
answer: they count against their system), 2 for bad usage or settings, 1 when a system
answered no item at all (a wrong endpoint or key, say) or the run failed.
"""

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moa_graph.cli.options import add_call_arguments, settings_from
from moa_graph.errors import MoAConfigError
from moa_graph.presets import PRESETS
from moa_graph.sync import run_sync
from moa_graph.usage import read_prices

if TYPE_CHECKING:
    from moa_graph.eval.suites import Suite


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``eval`` and its options to the `commands` of the main parser."""
    parser = commands.add_parser(
        "eval",
        parents=parents,
        help="compare MoA variants and single models on a suite, with intervals and cost",
        description="Run every system on the same items, score them (exact answers or a "
        "judge), and print the table; --out keeps results.json, items.jsonl, summary.md "
        "and plot.png. The --proposer/--aggregator options are the models the presets use.",
    )
    add = parser.add_argument
    add(
        "--suite",
        required=True,
        help="additions (two-digit sums, 8,100 distinct), tool-calls (forced calculate(op, a, "
        "b) calls, exact arguments), arithmetic, products, gsm, "
        "reasoning-gym:NAME (the 'eval' extra), jsonl:FILE "
        "(prompt and optional reference per line), mt-bench (judged), alpaca:FILE (judged), "
        "flask:FILE (your copy of FLASK's evaluation file; judged 1-5 per skill)",
    )
    add(
        "--systems",
        help=f"comma-separated: presets ({', '.join(sorted(PRESETS))}) on "
        "the configured models, single:SPEC (greedy unless the spec sets a temperature), "
        "best-single, json:FILE ({name: MoAContext fields})",
    )
    add(
        "--choose-panel",
        metavar="SPEC",
        action="append",
        help="instead of --systems: a candidate proposer (repeatable); each answers a "
        "selection split alone, the panel is grown greedily by how the members do together, "
        "written to OUT/panel.json (a --context file), and run on the held-out items next to "
        "the best single candidate",
    )
    add("--panel-size", type=int, default=3, help="most proposers in the chosen panel (3)")
    add(
        "--panel-score",
        choices=["vote", "coverage"],
        default="vote",
        help="vote: the members' vote must be right (default); coverage: one member must be",
    )
    add("--selection-share", type=float, default=0.5, help="share of items to choose on (0.5)")
    add(
        "--replay",
        metavar="SPEC",
        action="append",
        default=[],
        help="a vote or cascade replayed from recorded samples, no new calls (repeatable): "
        "vote:K, cascade:J:K (J samples; when not all agree, the vote of K reusing them), "
        "cascade:J:K:SHARE; reported as system replay:SPEC, without latency",
    )
    add(
        "--replay-from",
        metavar="SYSTEM",
        help="the system whose samples --replay reads: one vote of one proposer with n >= K "
        "(default: the first such system)",
    )
    add("--n", type=int, help="only the first N distinct items")
    add(
        "--eval-seed",
        "--seed",
        dest="eval_seed",
        type=int,
        default=7,
        help="seed of generated suites, the runs and the bootstrap (7)",
    )
    add("--baseline", help="the system the others are compared with (default: the first)")
    add("--judge", metavar="SPEC", help="judge model spec, for judged suites")
    add(
        "--judge-mode",
        choices=["pairwise", "single"],
        default="pairwise",
        help="pairwise against the baseline in both orders (default), or 1-10 grading",
    )
    add(
        "--rubrics",
        metavar="FILE",
        help="flask: suites: your copy of FLASK's skillset_description.json (default: the "
        "project's own rubrics)",
    )
    add("--judge-max-tokens", type=int, default=1024, help="most tokens per judgment (1024)")
    add("--out", type=Path, help="folder for results.json, items.jsonl, summary.md, plot.png")
    add("--concurrency", type=int, default=8, help="runs and judge calls in flight (8)")
    add_call_arguments(parser)
    add("--no-plot", action="store_true", help="skip plot.png")
    add(
        "--alpaca-export",
        action="store_true",
        help="also write AlpacaEval outputs files (out/alpaca_eval/) for the official tool",
    )
    add(
        "--langsmith",
        action="store_true",
        help="also log each system as a LangSmith experiment (uploaded with a key; offline "
        "without one)",
    )
    add("--no-progress", action="store_true", help="no progress display")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation `args` describe, print the summary, write the files; return 0.

    Raises:
        MoAConfigError: Bad options or settings (exit status 2), before any model call.
    """
    try:  # the 'eval' extra: scipy's statistics, the plot
        from moa_graph.eval.artifacts import export_alpaca_eval, write_artifacts
        from moa_graph.eval.markdown import render
        from moa_graph.eval.runner import arun_eval
        from moa_graph.eval.suites import load_suite
    except ImportError as exc:
        raise MoAConfigError(
            f"moa-graph eval needs the 'eval' extra ({exc}): pip install 'moa-graph[eval]'"
        ) from None
    settings = settings_from(args)
    if args.alpaca_export and args.out is None:
        raise MoAConfigError("--alpaca-export writes files: give --out DIR")
    suite = load_suite(args.suite, n=args.n, seed=args.eval_seed)
    if args.alpaca_export and suite.turns > 1:
        raise MoAConfigError(
            f"--alpaca-export needs a single-turn suite; {args.suite!r} has {suite.turns} turns"
        )
    if args.choose_panel:
        return _choose_panel(args, suite, settings)
    if not args.systems:
        raise MoAConfigError("give --systems (or --choose-panel SPEC, repeated)")
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    try:
        report = run_sync(
            arun_eval(
                suite, systems, settings=settings, seed=args.eval_seed,
                judge=args.judge, judge_mode=args.judge_mode, baseline=args.baseline,
                out=args.out, concurrency=args.concurrency,
                prices=read_prices(args.prices) if args.prices else None,
                judge_max_tokens=args.judge_max_tokens, progress=not args.no_progress,
                replays=args.replay, replay_from=args.replay_from, rubrics=args.rubrics,
            )
        )  # fmt: skip
    except KeyboardInterrupt:
        kept = (
            f"the answers so far are kept in {args.out / 'runs'}: run the same command again "
            "to go on from them"
            if args.out is not None
            else "nothing was kept (give --out DIR to keep answers across runs)"
        )
        print(f"moa-graph: eval interrupted; {kept}", file=sys.stderr)
        raise
    show(render(report))
    if args.out is not None:
        paths = write_artifacts(report, args.out, plot=not args.no_plot)
        if args.alpaca_export:
            paths += export_alpaca_eval(report, args.out)
        print(f"moa-graph: wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    silent = [s.name for s in report.systems if s.failures == report.items]
    for name in silent:
        first = next(r for r in report.records if r["system"] == name)
        failure = first["turns"][-1]["error"] if first["turns"] else None
        error = failure["message"] if failure else None
        print(f"moa-graph: {name} answered no item; the first error: {error}", file=sys.stderr)
    if silent:
        return 1
    if args.langsmith:
        from moa_graph.eval.experiment import has_langsmith_key, log_experiments

        logged = run_sync(log_experiments(report))
        where = "uploaded to LangSmith" if has_langsmith_key() else "offline (no LangSmith key)"
        print(f"moa-graph: {len(logged)} LangSmith experiments, {where}", file=sys.stderr)
    return 0


def _choose_panel(args: argparse.Namespace, suite: "Suite", settings: dict[str, Any]) -> int:
    """``--choose-panel``: choose, print, and write ``panel.json`` (with --out)."""
    from moa_graph.eval.panel import achoose_panel, describe

    choice = run_sync(
        achoose_panel(
            suite, args.choose_panel, k=args.panel_size, how=args.panel_score,
            selection_share=args.selection_share, seed=args.eval_seed, settings=settings,
            out=args.out, concurrency=args.concurrency, progress=not args.no_progress,
        )
    )  # fmt: skip
    show(describe(choice))
    if args.out is not None:
        print(f"moa-graph: wrote {args.out / 'panel.json'} (use it with --context)",
              file=sys.stderr)  # fmt: skip
    return 0


def show(markdown: str) -> None:
    """Print a report: drawn by rich on a terminal, the Markdown itself when piped."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(markdown))
    else:
        print(markdown)
