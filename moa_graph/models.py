"""Turn 'provider:model' specs into LangChain chat models.

Hosted providers go through `langchain.chat_models.init_chat_model`, so every provider it
knows works once its package and credentials are present (``openai:``, ``bedrock_converse:``,
``anthropic:``, ...). OpenAI-compatible servers (vLLM, Ollama, Together, llama.cpp) use
``openai:`` with ``OPENAI_BASE_URL`` (and ``OPENAI_API_KEY``) set. ``local:`` is the embedded
model, reached the same way: `ChatOpenAI` pointed at the local server.
"""

import functools
from pathlib import Path
from typing import Any

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel

from moa_graph.errors import MoAConfigError
from moa_graph.local_server import local_base_url

LOCAL_PROVIDER = "local"


@functools.lru_cache(maxsize=64)
def load_chat_model(
    spec: str, *, temperature: float, max_tokens: int, streaming: bool = True
) -> BaseChatModel:
    """Create (once per distinct arguments) the chat model a spec names.

    Args:
        spec: ``"provider:model"``; only the first ``:`` separates the provider, so Bedrock
            ids such as ``"bedrock_converse:anthropic.claude-3-haiku-20240307-v1:0"`` work.
        temperature: Sampling temperature passed to the provider.
        max_tokens: Most tokens the call may generate.
        streaming: False forces plain (non-streaming) HTTP calls even while the graph
            streams; proposers use it so that their answers arrive whole, with usage.

    Returns:
        A LangChain chat model. For ``local:`` specs the embedded server is started first.

    Raises:
        MoAConfigError: The provider's package or credentials are missing, or the provider
            rejects the settings; the message names the spec.
        LocalModelError: The embedded model server could not start.
    """
    provider, model = spec.split(":", 1)
    kwargs: dict[str, Any] = {
        "temperature": temperature,
        "max_tokens": max_tokens,
        "disable_streaming": not streaming,
    }
    if provider == LOCAL_PROVIDER:
        kwargs.update(model_provider="openai", base_url=local_base_url(model), api_key="local")
        model = Path(model).stem  # the server's alias: "smollm2", or a GGUF file's name
    else:
        kwargs["model_provider"] = provider
    try:
        chat_model: BaseChatModel = init_chat_model(model, **kwargs)
    except ImportError as exc:
        raise MoAConfigError(f"{spec!r}: {exc}") from exc
    except Exception as exc:  # provider constructors raise assorted types for bad settings
        raise MoAConfigError(f"{spec!r}: cannot create the model: {exc}") from exc
    return chat_model


def model_label(model: BaseChatModel) -> str:
    """Return a readable name for a model instance: its model name, else its class name."""
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__
