"""A local HTTP endpoint that speaks the Bedrock Runtime Converse API, answered by a local model.

It serves ``POST /model/{modelId}/converse`` (the non-streaming call; proposers never stream)
for the requests langchain-aws sends, checks each request's SigV4 signature with botocore
against the one key pair it knows (a wrong key gets AWS's 403 ``AccessDeniedException``), turns
the Converse request into an OpenAI chat completion on `openai_base_url` (the embedded model's
server), and answers in Converse's shape with ``usage`` and ``stopReason``. Every model id
is answered by that one local model.

Tools go both ways: a ``toolConfig`` becomes OpenAI ``tools`` and ``tool_choice`` (``auto``,
``any`` as ``required``, ``tool`` by name), ``toolUse`` and ``toolResult`` blocks become
assistant tool calls and tool messages, and a reply's tool calls come back as ``toolUse``
blocks with ``stopReason: tool_use``. As Bedrock does, a request that holds ``toolUse`` or
``toolResult`` blocks without a ``toolConfig`` is refused with a ``ValidationException``.

Reference: Amazon Bedrock API reference, "Converse" (Runtime), request and response syntax.
"""

import json
import re
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY_ID = "AKIAMOAGRAPHTEST0001"
SECRET_ACCESS_KEY = "moa-graph-test-secret-access-key-do-not-leak"
REGION = "us-east-1"
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/bedrock/aws4_request, "
    r"SignedHeaders=(?P<headers>[^,]+), Signature=(?P<signature>[0-9a-f]{64})"
)
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
NO_TOOL_CONFIG = (
    "The toolConfig field must be defined when using toolUse and toolResult content blocks."
)


class ConverseEndpoint:
    """Serve the Converse API on 127.0.0.1 at a free port, in a background thread.

    Args:
        openai_base_url: OpenAI-compatible base URL (``.../v1``) that generates the answers.
        model: The model name to ask that server for.

    Attributes:
        url: The endpoint URL to give as ``endpoint_url`` (set on `start`).
        requests: The model id and Converse body of every correctly signed request.
        usages: The ``usage`` object of every answer, in the same order.
        rejected: How many requests failed the signature check.
        refused: The model id and body of every request refused as Bedrock would (tool blocks
            without a ``toolConfig``).
    """

    def __init__(self, openai_base_url: str, *, model: str = "smollm2") -> None:
        self.openai_base_url = openai_base_url
        self.model = model
        self.url = ""
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.usages: list[dict[str, int]] = []
        self.rejected = 0
        self.refused: list[tuple[str, dict[str, Any]]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "ConverseEndpoint":
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                match = re.fullmatch(r"/model/(?P<model>[^/]+)/converse", self.path)
                if match is None:
                    return self._reply(404, {"message": f"no route {self.path}"})
                if not endpoint.signature_ok(self, body):
                    endpoint.rejected += 1
                    return self._reply(
                        403,
                        {"message": "The request signature we calculated does not match."},
                        error_type="AccessDeniedException",
                    )
                model_id = urllib.request.unquote(match["model"])
                request = json.loads(body)
                if "toolConfig" not in request and _has_tool_blocks(request):
                    endpoint.refused.append((model_id, request))
                    return self._reply(
                        400, {"message": NO_TOOL_CONFIG}, error_type="ValidationException"
                    )
                endpoint.requests.append((model_id, request))
                self._reply(200, endpoint.converse(request))

            def _reply(self, status: int, payload: dict[str, Any], error_type: str = "") -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if error_type:
                    self.send_header("x-amzn-ErrorType", error_type)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def signature_ok(self, handler: BaseHTTPRequestHandler, body: bytes) -> bool:
        """Recompute the request's SigV4 signature with botocore and compare."""
        auth = _AUTH.fullmatch(handler.headers.get("Authorization", ""))
        if auth is None or auth["key"] != ACCESS_KEY_ID or auth["region"] != REGION:
            return False
        signed = auth["headers"].split(";")
        request = AWSRequest(
            method="POST",
            url=f"http://{handler.headers['Host']}{handler.path}",
            data=body,
            headers={name: handler.headers[name] for name in signed if name != "host"},
        )
        request.context["timestamp"] = handler.headers["X-Amz-Date"]
        signer = SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), "bedrock", REGION)
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        return bool(expected == auth["signature"])

    def converse(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one Converse request body with the local model."""
        messages = [
            {"role": "system", "content": "\n".join(b["text"] for b in request["system"])}
        ] if request.get("system") else []  # fmt: skip
        for message in request["messages"]:
            messages.extend(_openai_messages(message))
        config = request.get("inferenceConfig", {})
        chat: dict[str, Any] = {"model": self.model, "messages": messages}
        if "toolConfig" in request:
            chat.update(_openai_tools(request["toolConfig"]))
        for converse_key, openai_key in (
            ("maxTokens", "max_tokens"), ("temperature", "temperature"), ("topP", "top_p"),
            ("stopSequences", "stop"),
        ):  # fmt: skip
            if converse_key in config:
                chat[openai_key] = config[converse_key]
        http_request = urllib.request.Request(
            self.openai_base_url + "/chat/completions",
            data=json.dumps(chat).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(http_request, timeout=300) as response:
            completion = json.load(response)
        choice, usage = completion["choices"][0], completion["usage"]
        self.usages.append(
            {
                "inputTokens": usage["prompt_tokens"],
                "outputTokens": usage["completion_tokens"],
                "totalTokens": usage["total_tokens"],
            }
        )
        return {
            "output": {"message": {"role": "assistant", "content": _blocks(choice["message"])}},
            "stopReason": _STOP_REASONS.get(choice["finish_reason"], "end_turn"),
            "usage": self.usages[-1],
            "metrics": {"latencyMs": 0},
        }


def _has_tool_blocks(request: dict[str, Any]) -> bool:
    return any(
        "toolUse" in block or "toolResult" in block
        for message in request["messages"]
        for block in message["content"]
    )


def _openai_messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One Converse message as OpenAI chat messages (a tool result is a ``tool`` message)."""
    text = "".join(block.get("text", "") for block in message["content"])
    calls = [block["toolUse"] for block in message["content"] if "toolUse" in block]
    results = [block["toolResult"] for block in message["content"] if "toolResult" in block]
    out: list[dict[str, Any]] = [
        {
            "role": "tool",
            "tool_call_id": result["toolUseId"],
            "content": "".join(
                part["text"] if "text" in part else json.dumps(part.get("json"))
                for part in result["content"]
            ),
        }
        for result in results
    ]
    if calls:
        out.append({
            "role": "assistant", "content": text,  # the embedded server refuses null
            "tool_calls": [
                {"id": call["toolUseId"], "type": "function",
                 "function": {"name": call["name"], "arguments": json.dumps(call["input"])}}
                for call in calls
            ],
        })  # fmt: skip
    elif text or not results:
        out.append({"role": message["role"], "content": text})
    return out


def _openai_tools(config: dict[str, Any]) -> dict[str, Any]:
    """A Converse ``toolConfig`` as OpenAI ``tools`` and ``tool_choice``."""
    tools = [
        {"type": "function", "function": {
            "name": spec["name"], "description": spec.get("description", ""),
            "parameters": spec["inputSchema"]["json"],
        }}
        for spec in (tool["toolSpec"] for tool in config["tools"])
    ]  # fmt: skip
    choice = config.get("toolChoice", {"auto": {}})
    if "tool" in choice:
        return {
            "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": choice["tool"]["name"]}},
        }
    return {"tools": tools, "tool_choice": "required" if "any" in choice else "auto"}


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """An OpenAI reply message as Converse content blocks (tool calls as ``toolUse``)."""
    blocks: list[dict[str, Any]] = [{"text": message["content"]}] if message.get("content") else []
    for call in message.get("tool_calls") or []:
        blocks.append({"toolUse": {
            "toolUseId": call["id"], "name": call["function"]["name"],
            "input": json.loads(call["function"]["arguments"] or "{}"),
        }})  # fmt: skip
    return blocks or [{"text": ""}]
