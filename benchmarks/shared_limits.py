"""Provider calls a minute from ``moa-graph serve --workers 2`` under ``MOA_RPM=openai=R``.

The served model ``moa`` (two ``openai:p`` proposers, an ``openai:agg`` aggregator) calls the
tests' scripted upstream, which answers at once and notes when each call arrived. Clients send
requests one after another for ``--seconds`` (60); the script counts the upstream calls in the
busiest 60-second window (and the calls a second overall), for two limiters:

- ``shared``: today's setting: the two workers share one limit of R (an SQLite file that
  ``moa-graph serve`` sets up; ``MOA_LIMITS_STORE``);
- ``split``: each worker alone with R/2 (an empty ``MOA_LIMITS_STORE`` keeps each worker's
  limiter in its own process): the even split of earlier versions.

Each runs with one client (one keep-alive connection: one worker does all the work) and with
8 clients on fresh connections (both workers busy). A limit holds when no window has more
than R calls; a limiter wastes capacity when one busy client gets less than R.

    python benchmarks/shared_limits.py [--rpm 120] [--seconds 60]
"""

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx

sys.path.insert(0, str(Path(__file__).parents[1]))  # the tests' scripted server

from tests.scripted_openai_server import ScriptedOpenAIServer
from tests.serve_process import KEY, start_server

AUTH = {"Authorization": f"Bearer {KEY}"}


def busiest_minute(times: list[float]) -> int:
    """The most calls in any 60-second window."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 60:
            start += 1
        most = max(most, end - start + 1)
    return most


def measure(limiter: str, clients: int, rpm: int, seconds: float) -> tuple[int, float]:
    """Run one setting; return the busiest minute's calls and the calls a second."""
    arrived: list[float] = []
    lock = threading.Lock()

    def reply(body: dict) -> str:
        with lock:
            arrived.append(time.monotonic())
        return "an answer"

    upstream = SimpleNamespace(server=ScriptedOpenAIServer(reply).start())
    env = {"MOA_API_KEY": KEY, "MOA_MAX_CONCURRENT_REQUESTS": "64"}
    if limiter == "shared":
        env["MOA_RPM"] = f"openai={rpm}"
    else:
        env.update(MOA_RPM=f"openai={rpm / 2:g}", MOA_LIMITS_STORE="")
    server = start_server(upstream, "--workers", "2", **env)  # type: ignore[arg-type]
    url = next(server)
    stop = time.monotonic() + seconds
    body = {"model": "moa", "messages": [{"role": "user", "content": "Name a colour."}]}

    def client(reuse: bool) -> None:
        with httpx.Client(timeout=120, headers=AUTH) as http:
            while time.monotonic() < stop:
                headers = {} if reuse else {"Connection": "close"}
                http.post(f"{url}/chat/completions", json=body, headers=headers)

    try:
        arrived.clear()  # not the start-up's calls
        begin = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, [clients == 1] * clients))
        elapsed = time.monotonic() - begin
    finally:
        next(server, None)
        upstream.server.stop()
    return busiest_minute(arrived), len(arrived) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rpm", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    print(f"| limiter | clients | calls in the busiest minute (limit {args.rpm}) | calls/s |")
    print("|---|---|---|---|")
    for limiter in ("shared", "split"):
        for clients in (1, 8):
            most, rate = measure(limiter, clients, args.rpm, args.seconds)
            print(f"| {limiter} | {clients} | {most} | {rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
