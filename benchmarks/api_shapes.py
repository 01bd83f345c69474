"""What the Responses API's shape costs over Chat Completions on ``moa-graph serve``.

The server runs over the tests' scripted upstream, every call of which takes 100 ms (two
proposers, then the aggregator: a 200 ms critical path). Each shape answers the same question
``--requests`` times (20) one after another, plain and streamed, and the script prints the
median and the 90th percentile of the request's seconds, and the median's difference to Chat
Completions.

    python benchmarks/api_shapes.py [--requests 20]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import openai

sys.path.insert(0, str(Path(__file__).parents[1]))  # the tests' scripted server

from tests.scripted_openai_server import ScriptedOpenAIServer
from tests.serve_process import KEY, start_server


def timed(call: object, n: int) -> list[float]:
    seconds = []
    for _ in range(n):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20)
    n = parser.parse_args().requests
    upstream = SimpleNamespace(server=ScriptedOpenAIServer(lambda body: "a short answer",
                                                           delay_s=0.1).start())  # fmt: skip
    server = start_server(upstream, MOA_API_KEY=KEY)  # type: ignore[arg-type]
    url = next(server)
    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
    question = "Name a colour."
    messages = [{"role": "user", "content": question}]

    def streamed_chat() -> None:
        for _ in client.chat.completions.create(model="moa", messages=messages, stream=True):
            pass

    def streamed_responses() -> None:
        for _ in client.responses.create(model="moa", input=question, stream=True):
            pass

    shapes = {
        "chat completions": lambda: client.chat.completions.create(model="moa", messages=messages),
        "responses": lambda: client.responses.create(model="moa", input=question),
        "chat completions, streamed": streamed_chat,
        "responses, streamed": streamed_responses,
    }
    try:
        timed(shapes["chat completions"], 3)  # warm the server's models and connections
        results = {name: timed(call, n) for name, call in shapes.items()}
    finally:
        next(server, None)
        upstream.server.stop()
    print(f"| shape | median s | p90 s | median vs chat completions (ms) |  (n={n})")
    print("|---|---|---|---|")
    for name, seconds in results.items():
        base = results["chat completions, streamed" if "streamed" in name else "chat completions"]
        diff = (statistics.median(seconds) - statistics.median(base)) * 1000
        p90 = statistics.quantiles(seconds, n=10)[-1]
        print(f"| {name} | {statistics.median(seconds):.3f} | {p90:.3f} | {diff:+.1f} |")


if __name__ == "__main__":
    main()
