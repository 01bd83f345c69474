"""How long an honest request waits while ``moa-graph serve`` handles a costly JSON Schema.

``moa-graph serve`` runs over the tests' scripted upstream. For each schema below, one client
sends a chat completion with it as ``response_format`` while another asks ``GET /v1/models``
every 50 ms; the script prints the schema request's status and time, and the median and the
worst wait of the concurrent ``/v1/models`` calls. Schemas that used to pin the event loop
(an 18-level ``allOf`` chain, a self-reference) are refused before any model call; the
costliest accepted one (8,189 schemas at each of 1,500 places) is validated off the event loop
and stopped at its CPU deadline (``schema_too_costly``).

    python benchmarks/schema_attacks.py
"""

import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parents[1]))  # the tests' scripted server

from tests.serve_process import Upstream, start_server


def chain(levels: int) -> dict[str, Any]:
    """Definitions that each ``allOf`` two references to the next: 2^levels checks."""
    defs = {f"d{k}": {"allOf": [{"$ref": f"#/$defs/d{k + 1}"}] * 2} for k in range(levels)}
    return {**defs, f"d{levels}": {"type": "string"}}


SCHEMAS = {
    "18-level allOf chain": {
        "type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": chain(18),
    },
    "self-reference in if": {"type": "object", "if": {"$ref": "#"}},
    "costliest accepted (1,500 x 8,189)": {
        "type": "object",
        "properties": {f"k{i}": {"$ref": "#/$defs/d0"} for i in range(1500)},
        "$defs": chain(11),
    },
    "plain object (baseline)": {"type": "object", "properties": {"a": {"type": "string"}}},
}  # fmt: skip


def measure(url: str, schema: dict[str, Any]) -> tuple[int, str, float, list[float]]:
    """Send `schema` once while polling ``/models``; return status, code, seconds, waits."""
    waits: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            start = time.perf_counter()
            httpx.get(f"{url}/models", timeout=60)
            waits.append(time.perf_counter() - start)
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    start = time.perf_counter()
    body = {
        "model": "moa",
        "messages": [{"role": "user", "content": "Name a colour."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "A", "schema": schema}},
    }
    response = httpx.post(f"{url}/chat/completions", json=body, timeout=120)
    took = time.perf_counter() - start
    time.sleep(0.2)
    done.set()
    poller.join()
    code = response.json().get("error", {}).get("code") or "" if response.status_code != 200 else ""
    return response.status_code, code, took, waits


def main() -> None:
    upstream = Upstream()
    server = start_server(upstream)
    url = next(server)
    try:
        print("| schema | status | code | request s | /v1/models median s | worst s |")
        print("|---|---|---|---|---|---|")
        for name, schema in SCHEMAS.items():
            status, code, took, waits = measure(url, schema)
            print(f"| {name} | {status} | {code or '-'} | {took:.2f} | "
                  f"{statistics.median(waits):.3f} | {max(waits):.3f} |")  # fmt: skip
    finally:
        next(server, None)
        upstream.server.stop()


if __name__ == "__main__":
    main()
