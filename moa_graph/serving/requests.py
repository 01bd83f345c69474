"""Requests, in Chat Completions' shape: what is accepted, and how it becomes a run.

Every API shape (Chat Completions, the Responses API, Completions) is turned into a
`ChatRequest` and goes through `prepare`: the one code path for validation, the operator's
trust policy and budgets, and the run's settings. Tools and structured output follow OpenAI's
parameters: ``tools`` and ``tool_choice`` go to the aggregator (its tool calls are the
answer); a ``response_format`` of type ``json_schema`` or ``json_object`` becomes one more tool
whose arguments are the answer (`moa_graph.structured`), validated before it is returned; with
tools too, the answer is a call of one of them or the object. Every schema a request sends is
untrusted input, bounded by the operator's policy (`moa_graph.trust.RequestPolicy.check_schema`).

What each field does (the serving docs list them): sampling fields (``stop``, ``top_p``,
``frequency_penalty``, ``presence_penalty``) go to the calls that write the answer (the
aggregator, or the proposers when the answer is one of theirs); ``reasoning_effort`` and
``verbosity`` to the aggregator when its provider takes them; ``logit_bias`` is refused (token
ids mean nothing across a panel); ``service_tier`` is the operator's and never forwarded;
``user``, ``metadata``, ``store: false``, ``safety_identifier`` and ``prompt_cache_key`` are
ignored; any other unknown field is refused by name.
"""

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import jsonschema
from langchain_core.messages import BaseMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from moa_graph.context import PROPOSAL_MODES, MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.json_schema import validator
from moa_graph.models import takes_setting
from moa_graph.serving import metrics
from moa_graph.serving.catalog import ServedModel
from moa_graph.serving.errors import APIError, error_response, invalid_param
from moa_graph.spec import ModelSpec
from moa_graph.structured import AnswerSchema
from moa_graph.trust import RequestPolicy, RequestRefused

_UNSUPPORTED = {
    "functions": "functions are not supported: use tools",
    "function_call": "function_call is not supported: use tool_choice",
    "logprobs": "logprobs are not supported: the answer comes from several models",
    "top_logprobs": "top_logprobs are not supported",
    "audio": "audio output is not supported",
    "logit_bias": "logit_bias is not supported: token ids mean nothing across a panel of models",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
}
IGNORED = frozenset(
    {"user", "metadata", "safety_identifier", "prompt_cache_key", "service_tier", "modalities"}
)
"""Fields accepted and ignored: bookkeeping of the client's, or the operator's to decide
(``service_tier``)."""
SAMPLING = ("stop", "top_p", "frequency_penalty", "presence_penalty")
"""Fields that go to the calls that write the answer."""
AGGREGATOR_ONLY = ("reasoning_effort", "verbosity")
"""Fields for the aggregator, when its provider takes them."""
_ROLES = {"system", "developer", "user", "assistant", "tool"}
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
JSON_OBJECT = {"type": "object"}
"""The schema of a ``json_object`` answer: any JSON object."""


@dataclass(frozen=True)
class AnswerForm:
    """What a request's answer must be.

    Attributes:
        schema: For a ``response_format`` of ``json_schema`` or ``json_object``: the schema the
            answer must fit, named as its tool (an answer that calls it is the object as JSON
            text); None otherwise.
        parallel_tool_calls: False: at most one tool call is returned (the first).
    """

    schema: AnswerSchema | None = None
    parallel_tool_calls: bool = True
    forced: bool = False
    """The request forces a tool call (``tool_choice`` ``required`` or a named tool): an
    answer without one is an error, never text."""
    stop: tuple[str, ...] = ()
    """Stop sequences: the answer's text ends before the first of them."""


class ChatRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``, and what other API shapes are turned into."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    n: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stop: str | list[str] | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    store: bool | None = None
    moa: dict[str, Any] | None = None
    include_analysis: bool = False
    """Return the fusion judge's analysis (``aggregator_mode="analyze"``) in the answer's
    ``moa`` field."""


def prepare(
    body: ChatRequest, served: ServedModel, policy: RequestPolicy
) -> tuple[list[BaseMessage], MoAContext, AnswerForm]:
    """Validate the request and return its messages, settings and answer form; call nothing.

    Args:
        body: The request.
        served: The model it names.
        policy: The operator's allowlist and budgets (`moa_graph.trust.RequestPolicy`).
            The operator's ``rpm`` and ``tpm`` hold for the whole server: its workers share
            one limiter (`moa_graph.limit_store`).

    Raises:
        APIError: 400 naming the parameter (unsupported, refused or over a budget, a malformed
            tool or schema).
    """
    extra = body.model_extra or {}
    for name, value in extra.items():
        if name in _UNSUPPORTED and value not in (None, False, [], {}):
            raise APIError(400, _UNSUPPORTED[name], "invalid_request_error", param=name)
        if name not in _UNSUPPORTED and name not in IGNORED:
            raise invalid_param(name, "is not a field this server knows; remove it")
    if body.store:
        raise invalid_param("store", "must be false: this server stores nothing")
    if "audio" in (extra.get("modalities") or []):
        raise APIError(
            400, "audio output is not supported", "invalid_request_error", param="modalities"
        )
    if body.n is not None and body.n != 1:
        raise APIError(
            400,
            "n must be 1: MoA writes one answer per request",
            "invalid_request_error",
            param="n",
        )
    form = _answer_form(body, policy)
    try:
        policy.check_messages(len(body.messages))
    except RequestRefused as exc:
        raise _refused(exc) from None
    for i, message in enumerate(body.messages):
        _check_message(i, message)
    try:
        messages = convert_to_messages([_plain(m) for m in body.messages])
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise APIError(400, f"messages: {exc}", "invalid_request_error", param="messages") from exc
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None and max_tokens > policy.max_tokens:
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise APIError(
            400,
            f"{param}={max_tokens} is over this server's limit of {policy.max_tokens}: ask for "
            "less, or the operator raises MOA_SERVE_MAX_TOKENS",
            "invalid_request_error",
            param=param,
        )
    try:
        policy.check_request(dict(body.moa or {}))
        context = served.context(dict(body.moa or {}))
        aggregator = context.aggregator_spec()
        aggregator = dataclasses.replace(
            aggregator,
            temperature=aggregator.temperature if body.temperature is None else body.temperature,
            max_tokens=max_tokens or aggregator.max_tokens,
        )
        context = dataclasses.replace(
            context,
            aggregator=aggregator,
            seed=context.seed if body.seed is None else body.seed,
        )
        context = _with_sampling(context, body)
        context = _with_answer_tools(context, body, form)
        context = policy.check_budget(context)
    except RequestRefused as exc:
        raise _refused(exc) from None
    except MoAConfigError as exc:
        raise APIError(400, str(exc), "invalid_request_error", param="moa") from exc
    return messages, context, form


def _with_sampling(context: MoAContext, body: ChatRequest) -> MoAContext:
    """Give the request's sampling fields to the calls that write the answer.

    Those are the aggregator's, or, where the answer is one proposal (``vote``, ``select``),
    the proposers'. ``reasoning_effort`` and ``verbosity`` go to the aggregator only.

    Raises:
        APIError: 400 for ``reasoning_effort`` or ``verbosity`` when the aggregator's provider
            does not take them.
    """
    sampling = {name: getattr(body, name) for name in SAMPLING if getattr(body, name) is not None}
    if isinstance(sampling.get("stop"), str):
        sampling["stop"] = [sampling["stop"]]
    aggregator = context.aggregator_spec()
    own = {name: getattr(body, name) for name in AGGREGATOR_ONLY if getattr(body, name)}
    for name in own:
        if not takes_setting(aggregator.model, name):
            raise invalid_param(name, f"is not a setting of this server's aggregator "
                                 f"({aggregator.model}); remove it")  # fmt: skip
    answer_proposers = context.aggregator_mode in PROPOSAL_MODES
    aggregator = _plus(aggregator, {**own, **({} if answer_proposers else sampling)})
    if not answer_proposers or not sampling:
        return dataclasses.replace(context, aggregator=aggregator)
    # The last layer's proposals are the candidates of the answer: their calls take it.
    layers: list[list[str | ModelSpec]] = [
        list(context.proposer_specs(k)) for k in range(1, context.rounds + 1)
    ]
    layers[-1] = [_plus(spec, sampling) for spec in context.proposer_specs(context.rounds)]
    return dataclasses.replace(
        context, aggregator=aggregator, layer_proposers=layers, proposers=layers[-1]
    )


def _plus(spec: ModelSpec, settings: dict[str, Any]) -> ModelSpec:
    if not settings:
        return spec
    return dataclasses.replace(spec, model_kwargs={**spec.model_kwargs, **settings})


def _with_answer_tools(context: MoAContext, body: ChatRequest, form: AnswerForm) -> MoAContext:
    """Give the run the request's tools and its answer's schema (`MoAContext.with_tools`)."""
    answer = form.schema.tool() if form.schema is not None else None
    if not body.tools and answer is None:
        return context
    return context.with_tools(body.tools or [], body.tool_choice, answer_tool=answer)


def _answer_form(body: ChatRequest, policy: RequestPolicy) -> AnswerForm:
    """Check ``tools``, ``tool_choice`` and ``response_format``; return the answer's form."""
    schema_bytes = 0
    for i, tool in enumerate(body.tools or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(function, dict)
        ):
            raise invalid_param(f"tools[{i}]", "must be {'type': 'function', 'function': {...}}")
        if not _TOOL_NAME.fullmatch(str(function.get("name", ""))):
            raise invalid_param(f"tools[{i}].function.name", "must be 1-64 of A-Z a-z 0-9 _ -")
        if "parameters" in function:
            param = f"tools[{i}].function.parameters"
            schema_bytes += _check_schema(policy, param, function["parameters"], schema_bytes)
    if body.tool_choice is not None:
        names = {t["function"]["name"] for t in body.tools or []}
        choice = body.tool_choice
        named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        if not names:
            raise invalid_param("tool_choice", "needs tools: give tools too")
        if choice not in ("auto", "none", "required") and named not in names:
            raise invalid_param(
                "tool_choice",
                "must be 'auto', 'none', 'required' or {'type': 'function', 'function': "
                "{'name': ...}} naming one of the tools",
            )
    parallel = body.parallel_tool_calls is not False
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    forced = bool(body.tools) and (
        body.tool_choice in ("required", "any") or isinstance(body.tool_choice, dict)
    )
    plain = AnswerForm(parallel_tool_calls=parallel, stop=stop, forced=forced)
    kind = (body.response_format or {}).get("type", "text")
    if kind == "text":
        return plain
    if kind not in ("json_schema", "json_object"):
        raise invalid_param("response_format.type", "use 'text', 'json_object' or 'json_schema'")
    if kind == "json_object":
        return dataclasses.replace(plain, schema=AnswerSchema("json_object", JSON_OBJECT))
    spec = (body.response_format or {}).get("json_schema")
    if not isinstance(spec, dict) or not _TOOL_NAME.fullmatch(str(spec.get("name", ""))):
        raise invalid_param(
            "response_format.json_schema.name", "give a name of 1-64 of A-Z a-z 0-9 _ -"
        )
    schema = spec.get("schema", JSON_OBJECT)
    _check_schema(policy, "response_format.json_schema.schema", schema, schema_bytes)
    if spec["name"] in {t["function"]["name"] for t in body.tools or []}:
        raise invalid_param("response_format.json_schema.name", "must differ from the tools' names")
    return dataclasses.replace(plain, schema=AnswerSchema(spec["name"], schema))


def _check_schema(policy: RequestPolicy, param: str, schema: object, before: int) -> int:
    """Check one schema of the request (`before`: bytes of its schemas so far); its bytes."""
    try:
        size = policy.check_schema(param, schema)
        policy.check_schema_total(before + size)
    except RequestRefused as exc:
        raise _refused(exc) from None
    assert isinstance(schema, dict)
    try:
        validator(schema)
    except jsonschema.SchemaError as exc:
        raise invalid_param(param, f"is not a valid JSON Schema: {exc.message}") from None
    return size


def _refused(error: RequestRefused) -> APIError:
    metrics.observe_refusal(error)
    return APIError(error.status, str(error), "invalid_request_error", param=error.param)


def _check_message(i: int, message: dict[str, Any]) -> None:
    role = message.get("role")
    if role not in _ROLES:
        raise APIError(
            400,
            f"messages[{i}].role {role!r} is not supported: use one of {sorted(_ROLES)}",
            "invalid_request_error",
            param=f"messages[{i}].role",
        )
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise invalid_param(f"messages[{i}].tool_call_id", "is required on a tool message")
    if message.get("tool_calls") is not None and role != "assistant":
        raise invalid_param(f"messages[{i}].tool_calls", "belong to assistant messages")
    content = message.get("content")
    if content is None and message.get("tool_calls"):
        return  # an assistant message that only calls tools
    parts = content if isinstance(content, list) else []
    if not isinstance(content, str | list) or any(
        not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str)
        for p in parts
    ):
        raise APIError(
            400,
            f"messages[{i}].content must be text or text parts",
            "invalid_request_error",
            param=f"messages[{i}].content",
        )


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """Join a message's text parts into one text, as some OpenAI-compatible servers need.

    An assistant turn that only calls tools may leave out its content (OpenAI allows it).
    """
    content = message.get("content")
    if isinstance(content, list):
        return {**message, "content": "".join(part.get("text", "") for part in content)}
    if content is None:
        return {**message, "content": ""}
    return message


class BodyLimit:
    """ASGI middleware: answer 413 to a request body over `max_bytes`, before it is parsed.

    Checks ``Content-Length`` first, then reads the body (a chunked one has no length) up to
    the limit and hands it to the app in one piece.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on once its body is known to be within the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. a streaming response waiting for a disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics.REFUSALS.labels(reason="over_budget").inc()
        error = APIError(
            413,
            f"the request body is over this server's limit of {self.max_bytes} bytes; the "
            "operator raises MOA_SERVE_MAX_BODY_BYTES",
            "invalid_request_error",
            code="request_too_large",
        )
        await error_response(error, scope["path"])(scope, receive, send)
