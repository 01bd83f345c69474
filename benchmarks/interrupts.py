"""Seconds from Ctrl-C (or SIGTERM) to exit, for ``moa-graph batch``, ``eval`` and ``ask``.

Each command runs over the tests' scripted server with calls of 0.3 s; the signal is sent once
the run is under way, and the script prints how long the process took to exit and with which
status (130 for SIGINT, 143 for SIGTERM).

    python benchmarks/interrupts.py
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # the tests' scripted server

from tests.scripted_openai_server import ScriptedOpenAIServer


def stop(argv: list[str], env: dict[str, str], ready: Callable[[], bool], signum: int) -> str:
    """Run ``moa-graph ARGV``, send `signum` once `ready()`; return the table's cells."""
    process = subprocess.Popen([sys.executable, "-m", "moa_graph.cli", *argv], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    while not ready():
        time.sleep(0.05)
    sent = time.perf_counter()
    process.send_signal(signum)
    process.wait(timeout=120)
    return (
        f"{signal.Signals(signum).name} | {time.perf_counter() - sent:.2f} | {process.returncode}"
    )


def main() -> None:
    server = ScriptedOpenAIServer(lambda body: "The answer is 42.", delay_s=0.3).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOA_")}
    env.update(OPENAI_API_KEY="test", OPENAI_BASE_URL=server.url, MOA_AGGREGATOR="openai:agg",
               MOA_PROPOSERS="openai:m,openai:m", MOA_RETRIES="0")  # fmt: skip
    folder = Path(tempfile.mkdtemp())
    rows = folder / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"q {i}", "reference": "42"}) + "\n"
                            for i in range(200)))  # fmt: skip
    print("| command | signal | seconds to exit | exit status |")
    print("|---|---|---|---|")
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            output = folder / f"out-{signum}.jsonl"
            cells = stop(["batch", str(rows), "-o", str(output), "--concurrency", "8",
                          "--no-progress"], env,
                         lambda o=output: o.exists() and len(o.read_text().splitlines()) >= 8,
                         signum)  # fmt: skip
            print(f"| batch (200 rows, 8 at a time) | {cells} |")
        out = folder / "eval"
        cells = stop(["eval", "--suite", f"jsonl:{rows}", "--systems", "moa-lite", "--out",
                      str(out), "--no-progress"], env,
                     lambda: any(p.stat().st_size for p in (out / "runs").glob("*.jsonl"))
                     if (out / "runs").is_dir() else False, signal.SIGINT)  # fmt: skip
        print(f"| eval (200 items) | {cells} |")
        before = len(server.requests)
        cells = stop(["ask", "What is 6 x 7?"], env, lambda: len(server.requests) > before,
                     signal.SIGINT)  # fmt: skip
        print(f"| ask | {cells} |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
