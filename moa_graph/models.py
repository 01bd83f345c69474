"""Turn 'provider:model' specs into LangChain chat models.

Hosted providers go through `langchain.chat_models.init_chat_model`, so every provider it
knows works once its package and credentials are present (``openai:``, ``bedrock_converse:``,
``anthropic:``, ...). OpenAI-compatible servers (vLLM, Ollama, Together, llama.cpp) use
``openai:`` with ``OPENAI_BASE_URL`` (and ``OPENAI_API_KEY``) set. ``local:`` is the embedded
model, reached the same way: `ChatOpenAI` pointed at the local server.

Missing credentials of OpenAI and Bedrock are caught here, when the model is created (before
any call), with an error that names the variable to set.
"""

import functools
import os
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
        MoAConfigError: The provider's package or credentials are missing (the message names
            the variable to set), or the provider rejects the settings; it names the spec.
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
        _require_credentials(provider, spec)
        kwargs["model_provider"] = provider
    if provider == LOCAL_PROVIDER or (provider == "openai" and _openai_base_url()):
        # langchain-openai sends the limit only as `max_completion_tokens`, which
        # llama-cpp-python's server (and other OpenAI-compatible servers) ignore.
        kwargs["extra_body"] = {"max_tokens": max_tokens}
    try:
        chat_model: BaseChatModel = init_chat_model(model, **kwargs)
    except ImportError as exc:
        raise MoAConfigError(f"{spec!r}: {exc}") from exc
    except Exception as exc:  # provider constructors raise assorted types for bad settings
        raise MoAConfigError(f"{spec!r}: cannot create the model: {exc}") from exc
    return chat_model


def _require_credentials(provider: str, spec: str) -> None:
    """Raise when a hosted provider's credentials are missing, naming what to set."""
    if provider == "openai" and not os.environ.get("OPENAI_API_KEY"):
        raise MoAConfigError(
            f"{spec!r}: the OpenAI provider needs an API key: set OPENAI_API_KEY. For an "
            "OpenAI-compatible server (vLLM, Ollama, Together) set OPENAI_BASE_URL too, and any "
            "non-empty OPENAI_API_KEY if the server checks none"
        )
    if provider in ("bedrock_converse", "bedrock"):
        import boto3  # only Bedrock users pay for importing it

        session = boto3.Session()
        if not (os.environ.get("AWS_REGION") or session.region_name):
            raise MoAConfigError(
                f"{spec!r}: Amazon Bedrock needs a region: set AWS_DEFAULT_REGION (or AWS_REGION)"
            )
        if session.get_credentials() is None:
            raise MoAConfigError(
                f"{spec!r}: Amazon Bedrock needs AWS credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE for a profile in ~/.aws/credentials"
            )


def _openai_base_url() -> str:
    return os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE") or ""


def model_label(model: BaseChatModel) -> str:
    """Return a readable name for a model instance: its model name, else its class name."""
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__
