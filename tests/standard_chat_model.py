"""What LangChain's standard chat-model tests (langchain-tests) need to know about `ChatMoA`.

The unit and integration suites both mix `ChatMoASettings` in.
"""

from typing import Any

from moa_graph import ChatMoA, MoAContext


class ChatMoASettings:
    """ChatMoA over ``openai:`` specs: two proposers and an ``agg`` aggregator."""

    @property
    def chat_model_class(self) -> type[ChatMoA]:
        return ChatMoA

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # temperature, max_tokens, timeout, stop and max_retries: ChatMoA takes its run settings
        # in its MoAContext (each applies to every call of the run), and refuses them as
        # arguments rather than ignore them.
        return {}

    @property
    def chat_model_params(self) -> dict[str, Any]:
        context = MoAContext(proposers=["openai:p", "openai:q"], aggregator="openai:agg",
                             retries=0, max_tokens=100)  # fmt: skip
        return {"context": context}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True
