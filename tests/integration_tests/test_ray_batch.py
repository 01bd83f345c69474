"""`moa-graph batch --ray` on a two-node Ray cluster: the same records as one machine, resume.

The cluster is Ray's own test cluster (``ray.cluster_utils.Cluster``): a head node and a
worker node on this machine, each its own raylet with 2 CPUs. The models are scripted
OpenAI-compatible endpoints in this process, reached by the actors over loopback; rows whose
prompt says "fail" fail in every proposer (a 400, not retried).
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "token")  # before Ray is imported, or setup stalls
ray = pytest.importorskip("ray")

from moa_graph import MoAContext, ModelSpec  # noqa: E402
from moa_graph.batch import BatchRunner  # noqa: E402
from moa_graph.batch.ray_executor import RayPairs  # noqa: E402
from moa_graph.batch.rows import row_or_error  # noqa: E402
from tests.scripted_openai_server import Fault, ScriptedOpenAIServer  # noqa: E402

pytestmark = pytest.mark.integration

TIMING = ("latency_s",)


def reply(body: dict[str, Any]) -> "str | Fault":
    question = body["messages"][-1]["content"]
    if body["model"] == "p" and "fail" in question:
        return Fault(400)
    return f"{body['model']} says 42 to {question}"


def ray_processes() -> list[str]:
    ps = subprocess.run(["ps", "-ww", "-eo", "args="], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if "raylet" in line or "gcs_server" in line]


@dataclass
class TwoNodes:
    address: str
    cluster: Any
    worker: Any


@pytest.fixture(scope="module")
def nodes() -> Iterator[TwoNodes]:
    from ray.cluster_utils import Cluster

    # Ray's workers get the environment the nodes started with, as on a real cluster.
    os.environ["OPENAI_API_KEY"] = "test"
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
        worker = cluster.add_node(num_cpus=2)
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
    finally:
        del os.environ["OPENAI_API_KEY"]
    yield TwoNodes(cluster.address, cluster, worker)
    ray.shutdown()
    cluster.shutdown()
    deadline = time.monotonic() + 15
    while ray_processes():
        assert time.monotonic() < deadline, ray_processes()
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(nodes: TwoNodes) -> str:
    return nodes.address


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedOpenAIServer]:
    server = ScriptedOpenAIServer(reply, delay_s=0.02).start()
    yield server
    server.stop()


@pytest.fixture
def context(upstream: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> MoAContext:
    monkeypatch.setenv("OPENAI_API_KEY", "test")  # for the runs on this process
    url = {"base_url": upstream.url}
    return MoAContext(
        proposers=[ModelSpec(model="openai:p", n=2, model_kwargs=url)],
        aggregator=ModelSpec(model="openai:agg", model_kwargs=url),
        retries=0,
    )


def prompts(count: int) -> list[str]:
    return [f"q{i} fail" if i % 50 == 7 else f"q{i}" for i in range(count)]


async def collect(runner: BatchRunner, items: list[str]) -> dict[str, dict[str, Any]]:
    rows = [row_or_error(i, item) for i, item in enumerate(items)]
    return {r["key"]: r async for r in runner.run(rows)}


def without_timing(record: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in record.items() if k not in TIMING}
    kept["proposals"] = [{k: v for k, v in p.items() if k not in TIMING}
                         for p in record["proposals"]]  # fmt: skip
    return kept


async def test_ray_gives_the_same_records_as_one_machine(cluster: str, context) -> None:
    items = prompts(150)
    local = await collect(BatchRunner(context=context, concurrency=32), items)
    executor = RayPairs(context, actors=2, per_actor=16)
    try:
        assert len(set(executor.nodes())) == 2  # one actor on each node
        runner = BatchRunner(context=context, concurrency=32, executor=executor)
        remote = await collect(runner, items)
    finally:
        executor.close()
    assert (runner.stats.skipped, runner.stats.ok + runner.stats.failed) == (0, 150)
    assert set(remote) == set(local)
    for key, record in local.items():
        assert without_timing(remote[key]) == without_timing(record)
    errors = [r for r in remote.values() if r["status"] == "error"]
    assert len(errors) == 3 and all(len(r["proposals"]) == 2 for r in errors)


async def test_resume_skips_rows_already_in_the_output(cluster, context, tmp_path) -> None:
    output = str(tmp_path / "out.jsonl")
    items = prompts(200)
    await collect(BatchRunner(context=context, output=output), items[:120])
    with open(output, "a") as f:
        f.write('{"id": "torn", "ro')
    executor = RayPairs(context, actors=2, per_actor=8)
    try:
        runner = BatchRunner(context=context, output=output, executor=executor)
        await collect(runner, items)
    finally:
        executor.close()
    assert (runner.stats.skipped, runner.stats.ok + runner.stats.failed) == (120, 80)
    ids = [json.loads(line)["id"] for line in Path(output).read_text().splitlines()]
    assert sorted(ids, key=int) == [str(i) for i in range(200)]


def test_a_killed_driver_is_resumed_with_every_row_once(
    cluster: str, upstream: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    source, output = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": f"r{i}", "prompt": p}) + "\n"
                              for i, p in enumerate(prompts(250))))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOA_")}
    env.update(OPENAI_API_KEY="test", OPENAI_BASE_URL=upstream.url, MOA_RETRIES="0",
               MOA_PROPOSERS="openai:p,openai:p", MOA_AGGREGATOR="openai:agg")  # fmt: skip
    argv = [sys.executable, "-m", "moa_graph.cli", "batch", str(source), "-o", str(output),
            "--ray", cluster, "--ray-actors", "2", "--concurrency", "16",
            "--no-progress"]  # fmt: skip
    driver = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not output.exists() or len(output.read_text().splitlines()) < 80:
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else b""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()

    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 1, again.stderr  # 1: the "fail" rows are error records
    assert again.stdout == ""  # Ray's output stays off stdout
    assert "2 Ray actors on 2 nodes" in again.stderr
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(f"r{i}" for i in range(250))
    assert sum(r["status"] == "error" for r in records) == 5
    assert ray.cluster_resources().get("CPU") == 4  # the cluster survived the kill


def test_embedded_model_on_ray(tmp_path: Path) -> None:
    source, output = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"prompt": p}) + "\n"
                              for p in ("Name a fruit.", "Name a colour.", "Say hi.")))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOA_")}
    done = subprocess.run(
        [sys.executable, "-m", "moa_graph.cli", "batch", str(source), "-o", str(output),
         "--ray", "--ray-actors", "1", "--max-tokens", "16", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(records) == 3 and all(r["status"] == "ok" and r["answer"] for r in records)


async def test_a_killed_node_loses_no_row(nodes: TwoNodes, context, upstream, tmp_path) -> None:
    # Last in the module: the worker node stays dead.
    output = str(tmp_path / "out.jsonl")
    items = [f"slow q{i}" for i in range(120)]
    upstream.delay_s = 0.1
    executor = RayPairs(context, actors=2, per_actor=8)
    try:
        assert len(set(executor.nodes())) == 2
        runner = BatchRunner(context=context, concurrency=16, output=output, executor=executor)
        rows = [row_or_error(i, item) for i, item in enumerate(items)]
        killed = False
        async for _ in runner.run(rows):
            if not killed and runner.stats.ok >= 20:
                nodes.cluster.remove_node(nodes.worker)  # its raylet and actor are gone
                killed = True
                # asked while Ray restarts the lost actor: it answers from the head
                assert len(set(executor.nodes())) == 1
        died = [json.loads(line) for line in Path(output).read_text().splitlines()]
        died = [r for r in died if r["status"] == "error"]
        assert died and all(r["error"]["type"] == "WorkerDied" for r in died)
        again = BatchRunner(context=context, output=output, retry_failed=True, executor=executor)
        await collect(again, items)
    finally:
        upstream.delay_s = 0.02
        executor.close()
    assert again.stats.ok == len(died) and again.stats.skipped == 120 - len(died)
    records = [json.loads(line) for line in Path(output).read_text().splitlines()]
    # the retry replaced each failed row in place: every row once, all ok
    assert sorted(r["id"] for r in records) == sorted(str(i) for i in range(120))
    assert {r["status"] for r in records} == {"ok"}
