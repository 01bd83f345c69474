"""Single model vs MoA aggregator modes on 1-digit additions (reasoning-gym), on your models.

A small script until ``moa-graph eval`` exists: 40 items of reasoning-gym's
``basic_arithmetic`` (2 terms, 1 digit, + only, seed 7), each asked with "Give only the final
number."; the answer's last number is scored by the dataset's own checker. Systems: the single
model greedy (temperature 0), and Self-MoA with each aggregator mode (3 samples at the
context's temperature + the same model aggregating). The MoA systems of one item share their
proposer seeds (``seed`` = item number), so their samples match where the server honours seeds.
Prints a Markdown table: correct / n with a Wilson 95% interval, tokens and calls per item.

    pip install reasoning-gym==0.1.25
    python benchmarks/variants_arithmetic.py [--model local:smollm2] [--n 40]
"""

import argparse
import math
import re
import time

import reasoning_gym
from langchain_core.messages import HumanMessage

from moa_graph import MoAContext, build_moa_graph
from moa_graph.moa import run_usage, usage_of
from moa_graph.models import load_chat_model

MODES = ("synthesize", "vote", "select")
LAST_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def score(dataset: object, item: dict, text: str) -> float:
    numbers = LAST_NUMBER.findall(text)
    return float(dataset.score_answer(numbers[-1] if numbers else "", item))  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="local:smollm2")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    dataset = reasoning_gym.create_dataset(
        "basic_arithmetic", size=args.n, seed=7, min_terms=2, max_terms=2, min_digits=1,
        max_digits=1, operators=("+",), allow_parentheses=False, allow_negation=False,
    )  # fmt: skip
    graph = build_moa_graph().compile()
    single = load_chat_model(args.model, temperature=0.0, max_tokens=args.max_tokens)
    rows: dict[str, dict[str, float]] = {
        name: {"correct": 0, "tokens": 0, "calls": 0, "seconds": 0.0}
        for name in ("single (greedy)", *MODES)
    }
    for i, item in enumerate(dataset):
        question = [HumanMessage(item["question"] + " Give only the final number.")]
        start = time.perf_counter()
        reply = single.invoke(question)
        usage = usage_of(reply)
        row = rows["single (greedy)"]
        row["correct"] += score(dataset, item, reply.text)
        row["tokens"] += (usage["input_tokens"] + usage["output_tokens"]) if usage else 0
        row["calls"] += 1
        row["seconds"] += time.perf_counter() - start
        for mode in MODES:
            context = MoAContext(
                proposers=[args.model] * 3, aggregator=args.model, aggregator_mode=mode,
                max_tokens=args.max_tokens, seed=i,
            )  # fmt: skip
            start = time.perf_counter()
            out = graph.invoke({"messages": question}, context=context)
            usage = run_usage(out)
            row = rows[mode]
            row["correct"] += score(dataset, item, out["messages"][-1].text)
            row["tokens"] += (usage["input_tokens"] + usage["output_tokens"]) if usage else 0
            row["calls"] += len(out["proposals"]) + out["aggregation"]["calls"]
            row["seconds"] += time.perf_counter() - start
    n = args.n
    print(f"{args.model}, reasoning-gym basic_arithmetic 1-digit additions, {n} items, seed 7\n")
    print("| system | correct | 95% interval | tokens / item | calls / item | s / item |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        low, high = wilson(int(row["correct"]), n)
        print(
            f"| {name} | {int(row['correct'])}/{n} | {low:.2f}-{high:.2f} | "
            f"{row['tokens'] / n:.0f} | {row['calls'] / n:.1f} | {row['seconds'] / n:.1f} |"
        )


if __name__ == "__main__":
    main()
