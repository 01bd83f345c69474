"""Clients of OpenAI-compatible servers: a pool per event loop, the embedded server's quirks.

`LoopLocalTransport` keeps one connection pool per event loop; `EmbeddedChatOpenAI` mends what
llama-cpp-python's server does differently. `moa_graph.models` builds its models with them.
"""

import asyncio
import functools
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk
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

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
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
