"""`langgraph dev` as a subprocess serving the graphs of langgraph.json, for tests.

The server runs on a free port, in its own session and a temporary working directory (it writes
`.langgraph_api/` there), with the repository's langgraph.json rewritten to absolute paths.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.serve_process import free_port

ROOT = Path(__file__).parents[1]


@dataclass
class DevServer:
    url: str
    pid: int


def session_processes(sid: int) -> list[str]:
    ps = subprocess.run(["ps", "-ww", "-eo", "sid=,pid=,args="], capture_output=True, text=True)
    return [line for line in ps.stdout.splitlines() if int(line.split()[0]) == sid]


def run_dev_server(workdir: Path, **env: str) -> Iterator[DevServer]:
    """Run ``langgraph dev`` in `workdir` with `env` on top of this process's environment.

    ``MOA_*`` and ``LANGSMITH_*`` variables of this process are left out. On exit it stops the
    server as Ctrl-C does and checks that nothing of its session is left behind.
    """
    config = json.loads((ROOT / "langgraph.json").read_text())
    config["dependencies"] = [str(ROOT)]
    config["graphs"] = {name: str(ROOT / path) for name, path in config["graphs"].items()}
    assert config["http"]["app"] == "moa_graph.serving.app:app"  # module form: imported once
    (workdir / "langgraph.json").write_text(json.dumps(config))
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "MOA_"))}
    environment.update(LANGGRAPH_CLI_NO_ANALYTICS="1", LANGSMITH_TRACING="false", **env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    repo_state_before = (ROOT / ".langgraph_api").exists()
    with (workdir / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [Path(sys.executable).parent / "langgraph", "dev", "--port", str(port),
             "--no-browser", "--no-reload", "--config", "langgraph.json"],
            cwd=workdir, env=environment, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _answers(url + "/ok"):
            assert process.poll() is None, (workdir / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "langgraph dev did not answer in 120 s"
            time.sleep(0.5)
        yield DevServer(url, process.pid)
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C in `make studio` sends
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    time.sleep(1)
    leftovers = session_processes(process.pid)  # its session id is its pid
    if leftovers:
        os.killpg(process.pid, signal.SIGKILL)
    assert leftovers == [], "langgraph dev left processes behind"
    assert (workdir / ".langgraph_api").is_dir()
    assert (ROOT / ".langgraph_api").exists() == repo_state_before


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
