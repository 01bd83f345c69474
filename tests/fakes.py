"""Scripted chat models for unit tests of the graph logic (never for showing a feature works)."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


@dataclass
class Concurrency:
    """Counts calls in flight across models, to observe parallelism."""

    in_flight: int = 0
    peak: int = 0


class ScriptedChatModel(BaseChatModel):
    """Answers `reply` (or raises `error`) after `delay_s` seconds and records every prompt."""

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
        raise NotImplementedError("the MoA graph calls models asynchronously")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await self._begin(messages)
        message = AIMessage(
            self.reply,
            usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

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
