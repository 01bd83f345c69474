"""A scripted OpenAI-compatible chat completions server on 127.0.0.1, for tests.

It records every request body and answers with text chosen by a script, so tests can check
what spec-built models really send over HTTP (temperature, max_tokens, seed, model_kwargs,
system prompts) through langchain-openai's real client. Streaming requests get SSE chunks.
"""

import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Fault:
    """What the script returns to fail a request: an HTTP error, or a hang of `hang_s`."""

    status: int = 500
    retry_after_s: float | None = None
    hang_s: float = 0.0


@dataclass(frozen=True)
class ToolCall:
    """What the script returns to answer with a tool call instead of text."""

    name: str
    arguments: dict[str, Any] | str
    """The arguments; text is sent as it is (e.g. JSON cut off mid-object)."""

    @property
    def json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class CutOff:
    """What the script returns for a text that stopped at max_tokens (``finish_reason: length``)."""

    text: str


Script = Callable[[dict[str, Any]], "str | Fault | ToolCall | CutOff"]


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 refuses connections under load
    daemon_threads = True


def numbered_replies(body: dict[str, Any]) -> str:
    """The default script: the model name and the request's seed."""
    return f"answer from {body['model']} seed {body.get('seed')}"


class ScriptedOpenAIServer:
    """Serves ``POST /v1/chat/completions``; `requests` holds each JSON body in arrival order.

    `answered` counts the requests that got a completion, and `usage` the tokens reported in
    them, so tests can check accounting against what the server counted.
    """

    def __init__(
        self,
        script: Script = numbered_replies,
        delay_s: float = 0.0,
        rpm: float | None = None,
        keep_alive: bool = False,
    ):
        self.script = script
        self.delay_s = delay_s
        self.rpm = rpm
        """When set, a request above this rate (over any 1-second window) gets a 429."""
        self.requests: list[dict[str, Any]] = []
        self.answered = 0
        self.faults = 0
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 keeps a connection open for the next request, as hosted APIs do;
            # HTTP/1.0 (the default here) closes it after every answer.
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    server.arrivals.append(now := time.monotonic())
                    recent = sum(t > now - 1.0 for t in server.arrivals)
                time.sleep(server.delay_s)
                over = server.rpm is not None and recent > server.rpm / 60 + 1
                text = Fault(429) if over else server.script(body)
                if isinstance(text, Fault):
                    self._fault(text)
                    return
                with server._lock:
                    server.answered += 1
                    server.usage["input_tokens"] += 11
                    server.usage["output_tokens"] += 7
                finish = "length" if isinstance(text, CutOff) else None
                text = text.text if isinstance(text, CutOff) else text
                if body.get("stream"):
                    self._stream(body, text, finish)
                else:
                    self._json(body, text, finish)

            def _fault(self, fault: Fault) -> None:
                with server._lock:
                    server.faults += 1
                if fault.hang_s:
                    time.sleep(fault.hang_s)
                payload = json.dumps({"error": {"message": "scripted fault", "type": "x"}})
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/json")
                if fault.retry_after_s is not None:
                    self.send_header("Retry-After", str(fault.retry_after_s))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client may have given up
                    self.wfile.write(payload.encode())

            def _json(
                self, body: dict[str, Any], text: "str | ToolCall", finish: str | None = None
            ) -> None:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if isinstance(text, ToolCall):
                    message = {"role": "assistant", "content": None, "tool_calls": [{
                        "id": "call_scripted", "type": "function",
                        "function": {"name": text.name, "arguments": text.json},
                    }]}  # fmt: skip
                payload = json.dumps(
                    {
                        "id": "chatcmpl-scripted",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": message,
                                "finish_reason": finish
                                or ("tool_calls" if isinstance(text, ToolCall) else "stop"),
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 11,
                            "completion_tokens": 7,
                            "total_tokens": 18,
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client may have gone
                    self.wfile.write(payload)

            def _stream(
                self, body: dict[str, Any], text: "str | ToolCall", finish: str | None = None
            ) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")  # the stream ends with the connection
                self.close_connection = True
                self.end_headers()
                deltas: list[dict[str, Any]]
                if isinstance(text, ToolCall):
                    arguments = text.json
                    half = len(arguments) // 2  # the arguments arrive in two fragments
                    deltas = [
                        {"tool_calls": [{"index": 0, "id": "call_scripted", "type": "function",
                                         "function": {"name": text.name,
                                                      "arguments": arguments[:half]}}]},
                        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]},
                    ]  # fmt: skip
                else:
                    words = text.split(" ")
                    deltas = [
                        {"content": word + (" " if i < len(words) - 1 else "")}
                        for i, word in enumerate(words)
                    ]
                finish = finish or ("tool_calls" if isinstance(text, ToolCall) else "stop")
                for i, delta in enumerate([*deltas, {}]):
                    chunk = {
                        "id": "chatcmpl-scripted",
                        "object": "chat.completion.chunk",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [{"index": 0, "delta": delta,
                                     "finish_reason": finish if i == len(deltas) else None}],
                    }  # fmt: skip
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
                    chunk = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                             "created": int(time.time()), "model": body["model"],
                             "choices": [], "usage": usage}  # fmt: skip
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "ScriptedOpenAIServer":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def faulty(
    *, server_errors: float, rate_limits: float, hangs: float, hang_s: float, reply: str = "42"
) -> Script:
    """A script that fails a fixed share of attempts: 5xx, 429 (with Retry-After) or hangs.

    Whether an attempt fails depends only on its request body and how many times that body
    was sent before, so the outcome of a batch does not depend on thread timing.
    """
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    def script(body: dict[str, Any]) -> "str | Fault":
        key = json.dumps(body, sort_keys=True)
        with lock:
            attempt = attempts[key] = attempts.get(key, -1) + 1
        draw = int(hashlib.sha256(f"{key}:{attempt}".encode()).hexdigest()[:8], 16) / 2**32
        if draw < server_errors:
            return Fault(502)
        if draw < server_errors + rate_limits:
            return Fault(429, retry_after_s=0.2)
        if draw < server_errors + rate_limits + hangs:
            return Fault(503, hang_s=hang_s)
        return f"The answer is {reply}."

    return script


def tool_loop_script(body: dict[str, Any]) -> "str | ToolCall":
    """A script for tool loops: proposers answer in text; the aggregator (``agg``), given
    tools, calls the first one with a = 3 and b = 4 (and op "+" for ``calculate``) until it sees
    a tool result, then answers "The sum is 7."; without tools it answers in text."""
    if body["model"] != "agg":
        return f"proposal from {body['model']}"
    if body.get("tools"):
        if body["messages"][-1]["role"] == "tool":
            return "The sum is 7."
        name = body["tools"][0]["function"]["name"]
        arguments: dict[str, Any] = {"a": 3, "b": 4}
        return ToolCall(name, {"op": "+", **arguments} if name == "calculate" else arguments)
    return "The final answer."


def question_of(body: dict[str, Any]) -> str:
    """The text of the last user message of a request."""
    content = next(m for m in reversed(body["messages"]) if m["role"] == "user")["content"]
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content)
    return str(content)


def arguments_for(schema: dict[str, Any], question: str) -> dict[str, Any]:
    """Arguments for a tool's JSON Schema: numbers and quoted names taken from `question`."""
    numbers = re.findall(r"-?\d+", question)
    quoted = re.findall(r"'([^']+)'", question)
    args: dict[str, Any] = {}
    for name, spec in schema.get("properties", {}).items():
        kind = spec.get("type") or next(
            (option["type"] for option in spec.get("anyOf", []) if option.get("type") != "null"),
            "string",
        )
        if "enum" in spec:
            args[name] = spec["enum"][0]
        elif kind in ("integer", "number"):
            args[name] = int(numbers.pop(0)) if numbers else 3
        elif kind == "boolean":
            args[name] = True
        elif kind == "array":
            args[name] = []
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = quoted[0] if quoted else question[:80]
    return args


def forced_call(body: dict[str, Any]) -> ToolCall:
    """The call of the forced tool (else the first), with arguments from the question."""
    choice, tools = body.get("tool_choice"), body["tools"]
    forced = choice["function"]["name"] if isinstance(choice, dict) else None
    tool = next((t for t in tools if t["function"]["name"] == forced), tools[0])["function"]
    return ToolCall(tool["name"], arguments_for(tool.get("parameters", {}), question_of(body)))
