"""`moa-graph serve` as a subprocess over a scripted upstream, and a listener for an attacker.

The served models (``openai:p`` proposers, an ``openai:agg`` aggregator) point at a scripted
OpenAI-compatible server in the test process, so tests see every upstream call.
"""

import glob
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.scripted_openai_server import (
    Fault,
    ScriptedOpenAIServer,
    ToolCall,
    arguments_for,
    forced_call,
    question_of,
)

PROPOSAL = "PROPOSAL-TEXT from a proposer"
ANSWER = "the final synthesized answer"
KEY = "moa-test-key-123"
UPSTREAM_KEY = "sk-server-secret-provider-key-do-not-leak"
"""The operator's provider key: an attacker must never receive it."""


@dataclass
class Upstream:
    """What the scripted models do; tests change it and read `server.requests`."""

    proposer_delay_s: float = 0.0
    fail_proposers: bool = False
    misfit_calls: bool = False
    """Tool calls with arguments that fit no schema (``{"unexpected": true}``)."""
    fail_first_proposer: bool = False
    """The first proposer call of each question fails (a panel that shrank)."""
    server: ScriptedOpenAIServer = field(init=False)
    _asked: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.server = ScriptedOpenAIServer(self.reply).start()

    def reply(self, body: dict) -> "str | Fault | ToolCall":
        """Given tools, every model calls the forced (else first) one until a tool result comes
        back, with arguments from the question; otherwise proposers propose and ``agg``
        answers."""
        if body.get("tools") and body["messages"][-1]["role"] != "tool":
            call = forced_call(body)
            return ToolCall(call.name, {"unexpected": True}) if self.misfit_calls else call
        if body.get("tools") and body.get("tool_choice") == "required":
            # After a tool result, a call is still required: the last tool (a typed answer's).
            last = body["tools"][-1]["function"]
            return ToolCall(last["name"], arguments_for(last.get("parameters", {}),
                                                        question_of(body)))  # fmt: skip
        if body["model"] == "agg":
            return ANSWER
        time.sleep(self.proposer_delay_s)
        question = str(body["messages"])
        first = question not in self._asked
        self._asked.add(question)
        if self.fail_proposers or (self.fail_first_proposer and first):
            return Fault(400)
        return PROPOSAL

    def calls(self, model: str) -> list[dict]:
        return [b for b in self.server.requests if b["model"] == model]


class Listener:
    """A TCP listener on 127.0.0.1 standing in for an attacker's server.

    It counts the connections it accepts and keeps what they send, then closes them.
    """

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/v1"
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(1)
                try:
                    self.received.append(connection.recv(65536))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self._socket.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    upstream: Upstream,
    *args: str,
    started: list[int] | None = None,
    log: "Path | None" = None,
    **env: str,
) -> Iterator[str]:
    """Run ``moa-graph serve`` (with `args`) on a free port; yield its ``/v1`` URL.

    `started`, when given, receives the server's process id; `log`, when given, the server's
    output (else it is discarded).
    """
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MOA_")}
    environment.update(
        OPENAI_API_KEY=UPSTREAM_KEY, OPENAI_BASE_URL=upstream.server.url,
        MOA_PROPOSERS="openai:p,openai:p", MOA_AGGREGATOR="openai:agg", MOA_RETRIES="0",
        MOA_SERVE_HEARTBEAT_S="0.3", **env,
    )  # fmt: skip
    output = log.open("wb") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "moa_graph.cli", "serve", "--port", str(port), *args],
        env=environment, stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    if started is not None:
        started.append(process.pid)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=2)
            break
        except httpx.HTTPError:
            assert process.poll() is None, log.read_text() if log is not None else "exited"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)
    if log is not None:
        output.close()  # type: ignore[union-attr]


def child_commands(pid: int) -> list[str]:
    """The command lines of the processes whose parent is `pid`, read from ``/proc``."""
    commands = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                # The name field may hold spaces; the parent id is the second field after it.
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                with open(stat.removesuffix("stat") + "cmdline", "rb") as f:
                    commands.append(f.read().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we read it
    return commands
