"""Requests/s of ``moa-graph serve`` with 1 and 2 workers, against a scripted upstream.

The upstream is an OpenAI-compatible app (uvicorn, its own process) that answers every chat
completion after ``--latency-s`` (0.2 s): a MoA request (2 proposers, then the aggregator) has a
critical path of 2 x latency. ``moa-graph serve --workers N`` runs with
``MOA_MAX_CONCURRENT_REQUESTS`` at the client count, and C clients each send requests one after
another for ``--seconds``. Prints a Markdown table: requests/s, p50/p99 seconds, and the
requests answered 429 or failing, per (workers, clients). Everything runs on this machine, so
the clients and the upstream share its cores with the server.

    python benchmarks/serve_workers.py [--workers 1 2] [--clients 32 128] [--seconds 20]
"""

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx


def upstream_app(latency_s: float) -> Any:
    """The scripted upstream: every chat completion answers after `latency_s` seconds."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(body: dict[str, Any]) -> Any:
        await asyncio.sleep(latency_s)
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
                "model": body["model"]}  # fmt: skip
        if not body.get("stream"):
            message = {"role": "assistant", "content": f"answer from {body['model']}"}
            choice = {"index": 0, "finish_reason": "stop", "message": message}
            return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}

        def events() -> Iterator[str]:
            import json

            delta = {"role": "assistant", "content": f"answer from {body['model']}"}
            chunk = {**base, "object": "chat.completion.chunk"}
            yield f"data: {json.dumps({**chunk, 'choices': [{'index': 0, 'delta': delta}]})}\n\n"
            done = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
            yield f"data: {json.dumps({**chunk, 'choices': done, 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not start") from None
            time.sleep(0.2)


@contextmanager
def running(command: list[str], url: str, env: dict[str, str]) -> Iterator[None]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(url, process)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


async def load(url: str, clients: int, seconds: float) -> dict[str, float]:
    """C clients, each sending one request after another until `seconds` have passed."""
    latencies: list[float] = []
    refused = failed = 0
    body = {"model": "moa", "messages": [{"role": "user", "content": "Name a colour."}]}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        end = time.monotonic() + seconds

        async def client() -> None:
            nonlocal refused, failed
            while time.monotonic() < end:
                start = time.monotonic()
                try:
                    response = await http.post("/chat/completions", json=body)
                except httpx.HTTPError:
                    failed += 1
                    continue
                if response.status_code == 200:
                    latencies.append(time.monotonic() - start)
                elif response.status_code == 429:
                    refused += 1
                else:
                    failed += 1

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_s": statistics.median(ordered) if ordered else float("nan"),
        "p99_s": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0,
        "ok": len(latencies),
        "429": refused,
        "failed": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--latency-s", type=float, default=0.2)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:  # the upstream's own process
        import uvicorn

        app = upstream_app(args.latency_s)
        uvicorn.run(app, host="127.0.0.1", port=args.upstream, log_level="warning")
        return

    upstream_port = free_port()
    upstream = f"http://127.0.0.1:{upstream_port}/v1"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOA_", "LANGSMITH_"))}
    env.update(OPENAI_API_KEY="benchmark", OPENAI_BASE_URL=upstream, LANGSMITH_TRACING="false",
               MOA_PROPOSERS="openai:p,openai:p", MOA_AGGREGATOR="openai:agg",
               MOA_RETRIES="0", MOA_MAX_CONCURRENT_REQUESTS=str(max(args.clients)))  # fmt: skip
    rows = []
    upstream_command = [sys.executable, __file__, "--upstream", str(upstream_port),
                        "--latency-s", str(args.latency_s)]  # fmt: skip
    with running(upstream_command, f"http://127.0.0.1:{upstream_port}/docs", env):
        for workers in args.workers:
            port = free_port()
            url = f"http://127.0.0.1:{port}/v1"
            command = [sys.executable, "-m", "moa_graph.cli", "serve", "--port", str(port),
                       "--workers", str(workers)]  # fmt: skip
            with running(command, url + "/models", env):
                asyncio.run(load(url, 4, 3.0))  # warm up every worker's clients
                for clients in args.clients:
                    rows.append((workers, clients, asyncio.run(load(url, clients, args.seconds))))
    print(f"{os.cpu_count()} cores; upstream calls take {args.latency_s} s; critical path "
          f"{2 * args.latency_s:.1f} s; {args.seconds:g} s per row\n")  # fmt: skip
    print("| workers | clients | requests/s | p50 s | p99 s | ok | 429 | failed |")
    print("|---|---|---|---|---|---|---|---|")
    for workers, clients, r in rows:
        print(f"| {workers} | {clients} | {r['requests_per_s']:.1f} | {r['p50_s']:.2f} "
              f"| {r['p99_s']:.2f} | {r['ok']} | {r['429']} | {r['failed']} |")  # fmt: skip


if __name__ == "__main__":
    main()
