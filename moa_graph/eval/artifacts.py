"""Files of an evaluation: results.json, items.jsonl, summary.md, plot.png, AlpacaEval export.

- ``results.json``: settings and versions, the summary figures, and every item's record
  (answers per turn, scores, judgments with the judge's raw text).
- ``items.jsonl``: the same records, one per (item, system) line.
- ``summary.md``: the table printed to the terminal.
- ``plot.png``: quality with 95% interval bars per system, and quality against tokens (or cost)
  per item, the view of the MoA paper's Fig. 5 (arXiv 2406.04692, section 3.4).
- ``skills.png`` (FLASK suites): each skill's mean score per system, bars side by side with
  95% intervals.
- ``alpaca_eval/<system>.json`` (on request): ``[{"instruction", "output", "generator"}]`` per
  system, the input of the official ``alpaca_eval`` tool, for users with a judge key.
"""

import json
import logging
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
    """Draw quality per system (with 95% intervals) and quality against tokens or cost per item.

    Raises:
        MoAConfigError: matplotlib is missing.
    """
    plt = _pyplot()
    shown = [s for s in report.systems if s.quality is not None and s.name != "best-single"]
    names = [s.name for s in shown]
    quality = [s.quality or 0.0 for s in shown]
    # Bars from the interval; never negative, as rounding could make them.
    lows = [q if s.low is None else s.low for q, s in zip(quality, shown, strict=True)]
    highs = [q if s.high is None else s.high for q, s in zip(quality, shown, strict=True)]
    below = [max(0.0, q - low) for q, low in zip(quality, lows, strict=True)]
    above = [max(0.0, high - q) for q, high in zip(quality, highs, strict=True)]
    by_cost = bool(shown) and all(s.cost_per_item is not None for s in shown)
    spend = [(s.cost_per_item or 0.0) if by_cost else s.tokens_per_item for s in shown]

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    positions = list(range(len(shown)))
    left.errorbar(quality, positions, xerr=[below, above], fmt="o", capsize=4)
    left.set_yticks(positions, names)
    left.set_ylim(max(len(shown), 1) - 0.5, -0.5)
    left.set_xlabel(f"{report.metric} (95% interval)")
    if report.metric == "win rate":
        left.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    left.set_title(f"{report.suite}, {report.items} distinct items")
    right.errorbar(spend, quality, yerr=[below, above], fmt="o", capsize=4)
    for x, y, name in zip(spend, quality, names, strict=True):
        right.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    right.set_xlabel("USD per item" if by_cost else "tokens per item")
    right.set_ylabel(report.metric)
    right.set_title(f"{report.metric} against {'cost' if by_cost else 'tokens'}")
    right.set_xlim(left=0)
    return _saved(plt, figure, path)


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
