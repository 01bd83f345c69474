"""Clients of OpenAI-compatible servers: a pool per event loop, the embedded server's quirks.

`LoopLocalTransport` keeps one connection pool per event loop; `EmbeddedChatOpenAI` mends what
llama-cpp-python's server does differently. `moa_graph.models` builds its models with them.
"""

import asyncio
import contextlib
import functools
import json
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI


class LoopLocalTransport(httpx.AsyncBaseTransport):
    """An httpx transport that keeps one connection pool per event loop.

    A kept-alive connection belongs to the event loop that opened it; sharing one pool across
    loops (``asyncio.run`` twice in a script, a thread with its own loop) fails the second
    loop's calls. Pools of loops that are gone are dropped with them.
    """

    def __init__(self) -> None:
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport]
        self._pools = weakref.WeakKeyDictionary()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` over this event loop's pool."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = httpx.AsyncHTTPTransport(limits=_LIMITS)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        """Close this event loop's pool."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.aclose()


_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
"""The connection limits of the openai SDK's own client."""


@functools.cache
def loop_local_client() -> httpx.AsyncClient:
    """The process's async HTTP client for OpenAI-compatible models (`LoopLocalTransport`)."""
    return httpx.AsyncClient(transport=LoopLocalTransport(), follow_redirects=True)


class EmbeddedChatOpenAI(ChatOpenAI):
    """`ChatOpenAI` for the embedded server (llama-cpp-python's), with two of its quirks mended.

    - An assistant turn with tool calls and no text gets ``""`` as its content: OpenAI allows
      ``null`` there, llama-cpp-python's server does not.
    - ``tool_choice: "required"`` among several tools gives a call: the server ignores
      "required" (the reply may be text), so a first step forces a ``choose_tool`` call whose
      argument is one of the tools' names, then the named tool is forced (its arguments under
      the tool's grammar). The first step's tokens are not in the call's usage.
    - A streamed answer gets its usage: the server sends none when streaming. The output
      tokens are the streamed fragments (the server streams one token each); the prompt's
      tokens come from the server, by the same request with ``max_tokens`` 1 (its prompt is in
      the server's cache by then, so only one token is evaluated). They arrive as one last
      usage chunk, as OpenAI sends it.
    """

    def _get_request_payload(
        self, input_: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        for message in payload.get("messages", []):
            if message.get("role") == "assistant" and message.get("content") is None:
                message["content"] = ""
        return payload

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        kwargs = self._chosen(messages, stop, kwargs)
        return super()._generate(messages, stop, run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        kwargs = await self._achosen(messages, stop, kwargs)
        return await super()._agenerate(messages, stop, run_manager, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        kwargs = self._chosen(messages, stop, kwargs)
        tokens, reported = 0, False
        for chunk in super()._stream(messages, stop, run_manager, **kwargs):
            tokens += _is_token(chunk)
            reported = reported or bool(getattr(chunk.message, "usage_metadata", None))
            yield chunk
        if not reported:
            counted = self.root_client.chat.completions.create(
                **self._counting_payload(messages, stop, kwargs)
            )
            yield _usage_chunk(counted.usage.prompt_tokens if counted.usage else 0, tokens)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        kwargs = await self._achosen(messages, stop, kwargs)
        tokens, reported = 0, False
        async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
            tokens += _is_token(chunk)
            reported = reported or bool(getattr(chunk.message, "usage_metadata", None))
            yield chunk
        if not reported:
            counted = await self.root_async_client.chat.completions.create(
                **self._counting_payload(messages, stop, kwargs)
            )
            yield _usage_chunk(counted.usage.prompt_tokens if counted.usage else 0, tokens)

    def _chosen(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The call's arguments, with "required" among several tools made one named tool."""
        if not _must_choose(kwargs):
            return kwargs
        reply = self.root_client.chat.completions.create(
            **self._choosing_payload(messages, stop, kwargs)
        )
        return _named(kwargs, reply)

    async def _achosen(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The async form of `_chosen`."""
        if not _must_choose(kwargs):
            return kwargs
        reply = await self.root_async_client.chat.completions.create(
            **self._choosing_payload(messages, stop, kwargs)
        )
        return _named(kwargs, reply)

    def _choosing_payload(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The request that picks the tool: one forced call whose argument is a tool's name.

        The server ignores ``tool_choice: "required"`` (the reply may be text); a named choice
        is forced, its arguments constrained by the tool's schema: here an enum of the names.
        """
        names = [t["function"]["name"] for t in kwargs["tools"]]
        described = "; ".join(
            f"{t['function']['name']}: {t['function'].get('description', '')}"
            for t in kwargs["tools"]
        )
        pick = {
            "type": "function",
            "function": {
                "name": CHOOSE_TOOL,
                "description": f"Choose the tool to call now. The tools: {described}",
                "parameters": {
                    "type": "object",
                    "properties": {"tool": {"type": "string", "enum": names}},
                    "required": ["tool"],
                },
            },
        }
        choice = {"type": "function", "function": {"name": CHOOSE_TOOL}}
        payload = self._get_request_payload(
            messages, stop=stop, **{**kwargs, "tools": [pick], "tool_choice": choice}
        )
        payload.pop("stream_options", None)
        return {**payload, "stream": False}

    def _counting_payload(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The streamed request again, not streamed and for one token: its usage is exact."""
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        payload.pop("stream_options", None)
        extra = {**payload.pop("extra_body", {}), "max_tokens": 1}
        return {**payload, "stream": False, "max_completion_tokens": 1, "extra_body": extra}


def _is_token(chunk: ChatGenerationChunk) -> bool:
    message = chunk.message
    return bool(message.content) or bool(getattr(message, "tool_call_chunks", None))


def _usage_chunk(input_tokens: int, output_tokens: int) -> ChatGenerationChunk:
    usage = UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )
    return ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=usage))


CHOOSE_TOOL = "choose_tool"
"""The name of the embedded server's first step when a call must be made among several tools."""


def _must_choose(kwargs: dict[str, Any]) -> bool:
    return kwargs.get("tool_choice") in ("required", "any") and len(kwargs.get("tools") or []) > 1


def _named(kwargs: dict[str, Any], reply: Any) -> dict[str, Any]:
    """`kwargs` with the tool the choosing step named forced by name (the first on a miss)."""
    names = [t["function"]["name"] for t in kwargs["tools"]]
    chosen = names[0]
    calls = reply.choices[0].message.tool_calls if reply.choices else None
    if calls:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            picked = json.loads(calls[0].function.arguments).get("tool")
            chosen = picked if picked in names else chosen
    return {**kwargs, "tool_choice": {"type": "function", "function": {"name": chosen}}}
