"""The operator's routes of `moa-graph serve` and the limiter store every process can share."""

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from langchain_core.messages import HumanMessage
from prometheus_client import REGISTRY

from moa_graph import MoAContext, build_moa_graph
from moa_graph.errors import MoAConfigError
from moa_graph.limit_store import SQLiteStateStore, store_for
from moa_graph.limits import Gcra, request_limiter
from moa_graph.run_summary import summarize
from moa_graph.serving.app import create_app
from moa_graph.serving.catalog import ServedModel
from moa_graph.serving.metrics import observe_run

KEY = "operator-key"
SETTINGS = {"proposers": ["openai:p", "openai:p"], "aggregator": "openai:agg"}
CATALOG = {"moa": ServedModel("moa", "", settings=SETTINGS)}


def client(**env: str) -> TestClient:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return TestClient(create_app(models=CATALOG, operator_routes=True))


@pytest.fixture(autouse=True)
def operator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("MOA_SERVE_METRICS", raising=False)


def test_health_and_readiness_need_no_key() -> None:
    api = client()
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json() == {"status": "ready", "models": ["moa"]}
    assert api.get("/v1/models").status_code == 401  # the API itself keeps its key


def test_a_model_that_cannot_be_built_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    answer = client().get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "not ready"
    [problem] = answer.json()["problems"]
    assert problem.startswith("moa: ")  # the model id and an error type, never the details


def test_metrics_sit_behind_the_key_unless_the_operator_opens_or_closes_them() -> None:
    api = client()
    assert api.get("/metrics").status_code == 401
    scraped = api.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    assert "# TYPE moa_requests_total counter" in scraped.text
    assert client(MOA_SERVE_METRICS="open").get("/metrics").status_code == 200
    assert client(MOA_SERVE_METRICS="off").get("/metrics").status_code == 404
    with pytest.raises(MoAConfigError, match="MOA_SERVE_METRICS='public'"):
        client(MOA_SERVE_METRICS="public")


def test_langgraph_devs_app_has_no_operator_routes() -> None:
    api = TestClient(create_app(models=CATALOG))  # LangGraph's server has its own /metrics
    assert api.get("/metrics").status_code == 404 and api.get("/readyz").status_code == 404


def test_two_stores_on_one_file_are_one_limit(tmp_path: Path) -> None:
    db = tmp_path / "limits.db"
    first, second = (Gcra(SQLiteStateStore(db, "rpm:openai:60"), 60, burst=1) for _ in "ab")
    assert first.take(1) == 0
    assert 0 < second.take(1) <= 1.0  # the same minute's slot, taken by the other holder
    apart = Gcra(SQLiteStateStore(db, "rpm:other:60"), 60, burst=1)
    assert apart.take(1) == 0  # another key is another limit


def test_another_process_waits_for_the_slot_this_one_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOA_LIMITS_STORE", f"sqlite:{tmp_path / 'limits.db'}")
    assert request_limiter("openai", 6).acquire(blocking=False)  # one request per 10 s
    other = subprocess.run(
        [sys.executable, "-c", "from moa_graph.limits import request_limiter; "
         "print(request_limiter('openai', 6).acquire(blocking=False))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert other.stdout.strip() == "False", other.stderr


def test_an_unknown_store_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_LIMITS_STORE", "memcached://host")
    with pytest.raises(MoAConfigError, match=r"sqlite:PATH .* redis://"):
        store_for("rpm:openai:60")


def calls_counted(model: str, role: str, status: str = "ok") -> float:
    labels = {"model": model, "role": role, "status": status}
    return REGISTRY.get_sample_value("moa_model_calls_total", labels) or 0.0


async def test_a_cascades_first_stage_is_counted_apart_from_the_proposers(openai_upstream) -> None:
    def script(body: dict) -> str:  # the first stage disagrees, so the MoA runs
        return f"It is {body['seed']}." if body["model"] == "cheap" else body["model"]

    openai_upstream(script)
    context = MoAContext(cascade=["openai:cheap n=3"], proposers=["openai:p"] * 2, seed=1,
                         aggregator="openai:agg", retries=0)  # fmt: skip
    question = {"messages": [HumanMessage("What is 6 x 7?")]}
    out = await build_moa_graph().compile().ainvoke(question, context=context)
    known = {"openai:cheap", "openai:p", "openai:agg"}
    roles = [("openai:cheap", "cascade"), ("openai:p", "proposer"), ("openai:agg", "aggregator")]
    before = [calls_counted(model, role) for model, role in roles]
    observe_run(summarize(out), "moa", known)
    after = [calls_counted(model, role) for model, role in roles]
    assert [b - a for a, b in zip(before, after, strict=True)] == [3, 2, 1]
