"""Scripted chat models for unit tests of the graph logic (never for showing a feature works)."""

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


@dataclass
class Concurrency:
    """Counts calls in flight across models, to observe parallelism."""

    in_flight: int = 0
    peak: int = 0
    lock: Any = field(default_factory=threading.Lock)


class ScriptedChatModel(BaseChatModel):
    """Answers `reply` (or raises `error`) after `delay_s` seconds and records every prompt.

    Works with sync and async calls (``invoke`` sleeps, ``ainvoke`` awaits the delay).
    """

    model_name: str = "scripted"
    reply: str = "ok"
    error: str | None = None
    delay_s: float = 0.0
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    concurrency: Concurrency = Field(default_factory=Concurrency)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._begin_sync(messages)
        return self._result()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await self._begin(messages)
        return self._result()

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        self._begin_sync(messages)
        for word in self.reply.split(" "):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        await self._begin(messages)
        for word in self.reply.split(" "):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _result(self) -> ChatResult:
        message = AIMessage(
            self.reply,
            usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _begin_sync(self, messages: list[BaseMessage]) -> None:
        self.calls.append(list(messages))
        with self.concurrency.lock:
            self.concurrency.in_flight += 1
            self.concurrency.peak = max(self.concurrency.peak, self.concurrency.in_flight)
        try:
            time.sleep(self.delay_s)
        finally:
            with self.concurrency.lock:
                self.concurrency.in_flight -= 1
        if self.error is not None:
            raise RuntimeError(self.error)

    async def _begin(self, messages: list[BaseMessage]) -> None:
        self.calls.append(list(messages))
        self.concurrency.in_flight += 1
        self.concurrency.peak = max(self.concurrency.peak, self.concurrency.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.concurrency.in_flight -= 1
        if self.error is not None:
            raise RuntimeError(self.error)


QUESTION = {"messages": [HumanMessage("What is 2 + 3?")]}
"""The input of the graph-logic tests."""


def scripted_proposers(*replies: str, delay_s: float = 0.0) -> list[ScriptedChatModel]:
    """One scripted proposer per reply, named p0, p1, ..., each answering after `delay_s`."""
    return [
        ScriptedChatModel(model_name=f"p{i}", reply=reply, delay_s=delay_s)
        for i, reply in enumerate(replies)
    ]


def run_moa(models: Any, aggregator: BaseChatModel, **context: Any) -> Any:
    """Return the coroutine of one MoA run over `models` with `context`, on `QUESTION`."""
    from moa_graph import MoAContext, build_moa_graph

    graph = build_moa_graph(proposers=models, aggregator=aggregator).compile()
    return graph.ainvoke(QUESTION, context=MoAContext(**context))
