"""Evaluations logged as LangSmith experiments, offline."""

import socket
from pathlib import Path
from typing import Any

import pytest

from moa_graph.eval import arun_eval
from moa_graph.eval.experiment import log_experiments
from tests.eval_scripted import A, B, jsonl
from tests.scripted_openai_server import ScriptedOpenAIServer


async def test_langsmith_experiments_run_offline_without_a_network_call(
    server: ScriptedOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = jsonl(
        tmp_path / "s.jsonl", [{"prompt": f"q {i}", "reference": i + 1} for i in range(3)]
    )
    report = await arun_eval(suite, [B, A])
    connections: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        connections.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    logged = await log_experiments(report)
    assert connections == []
    assert sorted(logged) == [A, B]
    assert sorted((row["item"], row["score"]) for row in logged[A]) == [
        ("0", 1.0), ("1", 1.0), ("2", 1.0),
    ]  # fmt: skip
    assert {row["score"] for row in logged[B]} == {0.0}
