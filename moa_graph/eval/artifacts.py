"""Files of an evaluation: results.json, items.jsonl, summary.md, plot.png, AlpacaEval export.

- ``results.json``: settings and versions, the summary figures, and every item's record
  (answers per turn, scores, judgments with the judge's raw text).
- ``items.jsonl``: the same records, one per (item, system) line.
- ``summary.md``: the table printed to the terminal.
- ``plot.png``: quality per system with its 95% interval (the baseline marked), each system's
  paired difference from the baseline with the interval its verdict reads, and quality against
  tokens (or cost) per item, the view of the MoA paper's Fig. 5 (arXiv 2406.04692, 3.4).
- ``skills.png`` (FLASK suites): each skill's mean score per system, bars side by side with
  95% intervals.
- ``alpaca_eval/<system>.json`` (on request): ``[{"instruction", "output", "generator"}]`` per
  system, the input of the official ``alpaca_eval`` tool, for users with a judge key.
"""

import json
import logging
import textwrap
from pathlib import Path
from typing import Any

from moa_graph.errors import MoAConfigError
from moa_graph.eval.markdown import render
from moa_graph.eval.report import EvalReport
from moa_graph.eval.systems import file_slug

log = logging.getLogger(__name__)


def write_artifacts(report: EvalReport, out: str | Path, *, plot: bool = True) -> list[Path]:
    """Write the report's files into `out` and return their paths.

    Args:
        report: What `moa_graph.eval.run_eval` returned.
        out: The folder (created when missing).
        plot: Also draw ``plot.png`` (needs matplotlib, in the ``eval`` extra). A plot that
            fails to draw is logged and left out; the other files are written first.

    Raises:
        MoAConfigError: `plot` is set and matplotlib is missing.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    results = {
        "settings": report.settings,
        "summary": report.summary(),
        "items": report.records,
    }
    paths = [folder / "results.json", folder / "items.jsonl", folder / "summary.md"]
    paths[0].write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    with paths[1].open("w", encoding="utf-8") as f:
        for record in report.records:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    paths[2].write_text(render(report), encoding="utf-8")
    drawings = [(write_plot, "plot.png")]
    if report.skills is not None:
        drawings.append((write_skill_plot, "skills.png"))
    for draw, name in drawings if plot else []:
        try:
            paths.append(draw(report, folder / name))
        except MoAConfigError:
            raise
        except Exception as exc:  # the results are written: a picture must not fail the run
            log.warning("%s was not drawn: %s: %s", name, type(exc).__name__, exc)
    return paths


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MoAConfigError("the plot needs matplotlib: pip install 'moa-graph[eval]'") from None
    return plt


def _saved(plt: Any, figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_skill_plot(report: EvalReport, path: Path) -> Path:
    """Draw FLASK's skills side by side: one group of bars per skill, one bar per system.

    Each bar is the system's mean 1-5 score on the skill with its 95% interval.

    Raises:
        MoAConfigError: matplotlib is missing.
    """
    assert report.skills is not None
    plt = _pyplot()
    systems = list(dict.fromkeys(r.system for r in report.skills.skills))
    skills = list(dict.fromkeys(r.skill for r in report.skills.skills))
    cells = {(r.system, r.skill): r for r in report.skills.skills}
    figure, axes = plt.subplots(figsize=(max(8.0, 1.1 * len(skills) + 2), 4.5))
    width = 0.8 / max(len(systems), 1)
    for i, system in enumerate(systems):
        at = [
            (j, cells[system, skill]) for j, skill in enumerate(skills) if (system, skill) in cells
        ]
        axes.bar(
            [j - 0.4 + width * (i + 0.5) for j, _ in at], [c.mean for _, c in at], width,
            yerr=[[c.mean - c.low for _, c in at], [c.high - c.mean for _, c in at]],
            capsize=2, label=system,
        )  # fmt: skip
    axes.set_xticks(range(len(skills)), skills, rotation=30, ha="right")
    axes.set_ylim(1, 5)
    axes.set_ylabel("mean score, 1-5 (95% interval)")
    axes.set_title(f"{report.suite}: skills, {report.items} items")
    axes.legend(fontsize=8)
    return _saved(plt, figure, path)


def write_plot(report: EvalReport, path: Path) -> Path:
    """Draw three panels: quality per system, the paired differences, quality against spend.

    - quality per system with its 95% interval (Wilson for accuracy, bootstrap otherwise), the
      baseline in its own colour, named "(baseline)", with a dotted line at its quality;
    - each system minus the baseline, paired over the items, with the bootstrap 95% interval
      the verdicts are read from (green better, red worse, grey not distinguishable; win rates
      against 0.5). Two systems' own intervals can overlap while their paired difference is
      clear, so this panel, not the first, says which differ;
    - quality against tokens (or USD with ``--prices``) per item, one marker per system named
      in the legend: the view of the MoA paper's Fig. 5 (arXiv 2406.04692, section 3.4).

    Raises:
        MoAConfigError: matplotlib is missing.
    """
    plt = _pyplot()
    shown = [s for s in report.systems if s.quality is not None and s.name != "best-single"]
    compared = [c for c in report.comparisons if c.baseline == report.baseline]
    rows = max(len(shown), len(compared), 1)
    figure, (left, middle, right) = plt.subplots(
        1, 3, figsize=(16, 1.6 + 0.42 * rows), layout="constrained"
    )
    colours = plt.get_cmap("tab10").colors
    baseline = next((s for s in shown if s.name == report.baseline), None)

    for i, s in enumerate(shown):
        quality = s.quality or 0.0
        low, high = (quality, quality) if s.low is None else (s.low, s.high or quality)
        is_baseline = s is baseline
        left.errorbar(
            quality, i, xerr=[[max(0.0, quality - low)], [max(0.0, high - quality)]],
            fmt="*" if is_baseline else "o", markersize=11 if is_baseline else 6,
            capsize=4, color="black" if is_baseline else colours[i % len(colours)],
        )  # fmt: skip
    left.set_yticks(range(len(shown)), [_label(s.name, s is baseline) for s in shown])
    left.set_ylim(max(len(shown), 1) - 0.5, -0.5)
    if baseline is not None and baseline.quality is not None:
        left.axvline(baseline.quality, color="black", linestyle=":", linewidth=1)
    left.set_xlabel(f"{report.metric} (95% interval of each system alone)")
    left.set_title(f"{report.suite}, {report.items} distinct items", fontsize=10)

    null = 0.5 if report.metric == "win rate" else 0.0
    tone = {"better": "tab:green", "worse": "tab:red", "not distinguishable": "grey"}
    for i, c in enumerate(compared):
        middle.errorbar(
            c.estimate, i, xerr=[[max(0.0, c.estimate - c.low)], [max(0.0, c.high - c.estimate)]],
            fmt="o", capsize=4, color=tone[c.verdict],
        )  # fmt: skip
    middle.set_yticks(range(len(compared)), [_label(c.system, False) for c in compared])
    middle.set_ylim(max(len(compared), 1) - 0.5, -0.5)
    middle.axvline(null, color="black", linestyle=":", linewidth=1)
    middle.set_xlabel(
        f"win rate against {report.baseline}"
        if report.metric == "win rate"
        else f"{report.metric} minus {report.baseline}'s, same items"
    )
    middle.set_title(
        "paired 95% intervals: the verdicts\n(green better, red worse, grey not distinguishable)",
        fontsize=10,
    )

    by_cost = bool(shown) and all(s.cost_per_item is not None for s in shown)
    for i, s in enumerate(shown):
        spend = (s.cost_per_item or 0.0) if by_cost else s.tokens_per_item
        is_baseline = s is baseline
        right.plot(
            spend, s.quality, "*" if is_baseline else "o",
            markersize=13 if is_baseline else 8,
            color="black" if is_baseline else colours[i % len(colours)],
            label=_label(s.name, is_baseline),
        )  # fmt: skip
    right.set_xlabel("USD per item" if by_cost else "tokens per item")
    right.set_ylabel(report.metric)
    right.set_xlim(left=0)
    right.set_title(f"{report.metric} against {'cost' if by_cost else 'tokens'}", fontsize=10)
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _label(name: str, is_baseline: bool) -> str:
    """A system's name wrapped at 30 characters, "(baseline)" added to the baseline's."""
    return textwrap.fill(name + (" (baseline)" if is_baseline else ""), 30)


def export_alpaca_eval(report: EvalReport, out: str | Path) -> list[Path]:
    """Write one AlpacaEval outputs file per system into ``out/alpaca_eval/``.

    Each is a JSON list of ``{"instruction", "output", "generator", "dataset"}`` for the items
    the system answered; give two of them to ``alpaca_eval --model_outputs A.json
    --reference_outputs B.json`` to get AlpacaEval's own (length-controlled) numbers.

    Raises:
        MoAConfigError: The suite has items of more than one turn (AlpacaEval is single-turn).
    """
    if any(len(r["turns"]) > 1 for r in report.records):
        raise MoAConfigError(
            "the AlpacaEval export needs a single-turn suite: AlpacaEval judges one turn"
        )
    folder = Path(out) / "alpaca_eval"
    folder.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, list[dict[str, Any]]] = {}
    for record in report.records:
        if record["ok"]:
            outputs.setdefault(record["system"], []).append(
                {
                    "instruction": record["turns"][0]["prompt"],
                    "output": record["answer"],
                    "generator": record["system"],
                    "dataset": record["category"] or report.suite,
                }
            )
    paths = []
    for system, rows in outputs.items():
        path = folder / f"{file_slug(system)}.json"
        path.write_text(json.dumps(rows, indent=2, ensure_ascii=False))
        paths.append(path)
    return paths
