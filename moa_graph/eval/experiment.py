"""The evaluation as LangSmith experiments, one per system, through langsmith's `aevaluate`.

The answers are the ones the evaluation already made (nothing is asked twice): each
experiment's target returns the system's recorded answer for the item, and its evaluator the
recorded score, so LangSmith shows the same numbers as ``summary.md``.

With ``LANGSMITH_API_KEY`` (or ``LANGCHAIN_API_KEY``) set, the items become a dataset and each
system an experiment on it, uploaded. Without a key it runs offline and makes no network call:
langsmith needs a client built as ``Client(api_key="offline", tracing_sampling_rate=0.0,
info={})`` and ``upload_results=False`` for that (docs/notes.md, "Evaluation": without that
client it still calls the server).
"""

import os
import uuid
import warnings
from typing import Any

from moa_graph.eval.records import ItemRecord
from moa_graph.eval.report import EvalReport, item_quality

_NAMESPACE = uuid.UUID("6f1d7c52-3c1b-4d7e-9a55-8a0a4b2f6a10")


def has_langsmith_key() -> bool:
    """Return True when a LangSmith API key is in the environment."""
    return bool(os.environ.get("LANGSMITH_API_KEY") or os.environ.get("LANGCHAIN_API_KEY"))


async def log_experiments(report: EvalReport) -> dict[str, list[dict[str, Any]]]:
    """Run one LangSmith experiment per system over the report's items; return their rows.

    Returns:
        ``{system: [{"item": id, "score": float | None}]}`` as LangSmith's evaluator saw them.
    """
    from langsmith import Client
    from langsmith.evaluation import aevaluate
    from langsmith.schemas import Example

    online = has_langsmith_key()
    client = Client() if online else Client(api_key="offline", tracing_sampling_rate=0.0, info={})
    items: dict[str, dict[str, Any]] = {}
    for record in report.records:
        items.setdefault(
            record["item"],
            {
                "inputs": {
                    "item": record["item"],
                    "turns": [t["prompt"] for t in record["turns"]],
                },
                "outputs": {"reference": record["reference"]},
            },
        )
    data: Any
    if online:
        data = _dataset(client, report, items)
    else:
        data = [
            Example(id=uuid.uuid5(_NAMESPACE, item), inputs=v["inputs"], outputs=v["outputs"])
            for item, v in items.items()
        ]
    by_system: dict[str, dict[str, ItemRecord]] = {}
    for record in report.records:
        by_system.setdefault(record["system"], {})[record["item"]] = record
    logged: dict[str, list[dict[str, Any]]] = {}
    for system, records in by_system.items():

        async def target(
            inputs: dict[str, Any], records: dict[str, Any] = records
        ) -> dict[str, Any]:
            record = records[inputs["item"]]
            return {"answer": record["answer"], "score": item_quality(record, report.metric)}

        def quality(run: Any, example: Any) -> dict[str, Any]:
            return {"key": report.metric.replace(" ", "_"), "score": run.outputs["score"]}

        with warnings.catch_warnings():  # upload_results=False is marked beta; it is what works
            warnings.filterwarnings("ignore", message=".upload_results. parameter is in beta")
            results = await aevaluate(
                target, data=data, evaluators=[quality], client=client,
                experiment_prefix=f"moa-graph {report.suite} {system}",
                metadata={"system": system, **report.settings.get("systems", {}).get(system, {})},
                upload_results=online, max_concurrency=4,
            )  # fmt: skip
        rows = []
        async for row in results:
            scores = row["evaluation_results"]["results"]
            rows.append(
                {
                    "item": (row["example"].inputs or {})["item"],
                    "score": scores[0].score if scores else None,
                }
            )
        logged[system] = rows
    return logged


def _dataset(client: Any, report: EvalReport, items: dict[str, dict[str, Any]]) -> str:
    seed = report.settings.get("seed")
    name = f"moa-graph eval: {report.suite} ({len(items)} items, seed {seed})"
    if not client.has_dataset(dataset_name=name):
        dataset = client.create_dataset(name, description=report.description)
        client.create_examples(
            dataset_id=dataset.id,
            examples=[{"inputs": v["inputs"], "outputs": v["outputs"]} for v in items.values()],
        )
    return name
