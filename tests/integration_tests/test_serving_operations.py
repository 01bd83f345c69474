"""`moa-graph serve --workers 2` as an operator sees it: health, readiness, one set of metrics.

The served models call a scripted OpenAI-compatible upstream (every call reports 11 tokens
in and 7 out). Each scrape reaches one worker or the other; with prometheus-client's
multiprocess mode each answers for the whole server.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from moa_graph.limit_store import store_for
from moa_graph.limits import TokenBudget, request_limiter
from tests.serve_process import ANSWER, KEY, Upstream, start_server

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def figures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def url(upstream: Upstream, figures_dir: Path) -> Iterator[str]:
    yield from start_server(upstream, "--workers", "2", MOA_API_KEY=KEY,
                            PROMETHEUS_MULTIPROC_DIR=str(figures_dir))  # fmt: skip


def base(url: str) -> str:
    return url.removesuffix("/v1")


def ask(url: str, question: str, **body) -> httpx.Response:
    messages = [{"role": "user", "content": question}]
    return httpx.post(f"{url}/chat/completions", headers=AUTH, timeout=60,
                      json={"model": "moa", "messages": messages, **body})  # fmt: skip


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of one scrape, by name and labels."""
    text = httpx.get(f"{base(url)}/metrics", headers=AUTH, timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_health_readiness_and_the_whole_servers_metrics(
    url: str, upstream: Upstream, figures_dir: Path
) -> None:
    assert httpx.get(f"{base(url)}/healthz", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{base(url)}/readyz", timeout=30)
    assert ready.status_code == 200 and "moa" in ready.json()["models"]
    assert httpx.get(f"{base(url)}/metrics", timeout=10).status_code == 401

    upstream.proposer_delay_s = 0.2  # requests overlap, so both workers answer some
    try:
        with ThreadPoolExecutor(8) as pool:
            done = list(pool.map(lambda i: ask(url, f"Name colour {i}."), range(8)))
        assert all(r.json()["choices"][0]["message"]["content"] == ANSWER for r in done)
        streamed = ask(url, "Name a fruit.", stream=True)
        assert streamed.status_code == 200 and "[DONE]" in streamed.text
        upstream.fail_first_proposer = True
        shrunk = ask(url, "Name a shape.")
        assert shrunk.status_code == 200 and shrunk.headers["x-moa-proposals"] == "1/2"
    finally:
        upstream.proposer_delay_s, upstream.fail_first_proposer = 0.0, False
    moved = {"model": "openai:x", "model_kwargs": {"base_url": "http://127.0.0.1:9/v1"}}
    assert ask(url, "Name a tree.", moa={"aggregator": moved}).status_code == 400

    workers = {p.name.rsplit("_", 1)[1] for p in figures_dir.glob("counter_*.db")}
    assert len(workers) == 2  # both workers counted requests
    scrapes = [scrape(url) for _ in range(6)]  # each reaches either worker
    figures = scrapes[0]
    for other in scrapes[1:]:
        assert value(other, "moa_requests_total", model="moa", status="200") == 10

    assert value(figures, "moa_requests_total", model="moa", status="200") == 10
    assert value(figures, "moa_requests_total", model="moa", status="400") == 1
    assert value(figures, "moa_request_duration_seconds_count", model="moa") == 11
    assert value(figures, "moa_time_to_first_token_seconds_count", model="moa") == 1
    proposer = {"model": "openai:p", "role": "proposer"}
    assert value(figures, "moa_model_calls_total", **proposer, status="ok") == 19
    assert value(figures, "moa_model_calls_total", **proposer, status="failed") == 1
    aggregator = {"model": "openai:agg", "role": "aggregator"}
    assert value(figures, "moa_model_calls_total", **aggregator, status="ok") == 10
    assert value(figures, "moa_tokens_total", model="openai:p", direction="input") == 19 * 11
    assert value(figures, "moa_tokens_total", model="openai:agg", direction="output") == 10 * 7
    assert value(figures, "moa_degraded_answers_total", model="moa") == 1
    assert value(figures, "moa_refusals_total", reason="not_allowed") == 1
    assert value(figures, "moa_requests_in_flight") == 0
    assert value(figures, "moa_model_calls_waiting") == 0
    labels = {dict(key[1]).get("model") for key in figures}
    assert labels <= {None, "moa", "none", "openai:p", "openai:agg", "other"}  # bounded


def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def redis_url() -> Iterator[str]:
    yield from redis_server()


def test_a_redis_store_is_one_limit_for_every_process(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOA_LIMITS_STORE", redis_url)
    assert request_limiter("openai", 6).acquire(blocking=False)  # one request per 10 s
    code = ("from moa_graph.limits import request_limiter; "
            "print(request_limiter('openai', 6).acquire(blocking=False), "
            "request_limiter('bedrock', 6).acquire(blocking=False))")  # fmt: skip
    env = {**os.environ, "MOA_LIMITS_STORE": redis_url}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, env=env)  # fmt: skip
    assert other.stdout.split() == ["False", "True"], other.stderr  # one limit per key
    budget = TokenBudget(1000, store_for("tpm:openai:1000"))
    assert budget.try_reserve(900) == 0
    again = TokenBudget(1000, store_for("tpm:openai:1000"))  # another holder, same budget
    assert again.try_reserve(200) > 0
