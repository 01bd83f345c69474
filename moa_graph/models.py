"""Turn 'provider:model' specs into LangChain chat models (a run's plan of calls: `call_plan`).

Hosted providers go through `langchain.chat_models.init_chat_model`, so every provider it
knows works once its package and credentials are present (``openai:``, ``bedrock_converse:``,
``anthropic:``, ...). OpenAI-compatible servers (vLLM, Ollama, Together, llama.cpp) use
``openai:`` with ``OPENAI_BASE_URL`` (and ``OPENAI_API_KEY``) set. ``local:`` is the embedded
model, reached the same way: `ChatOpenAI` pointed at the local server.

Missing credentials of OpenAI and Bedrock are caught here, when the model is created (before
any call), with an error that names the variable to set.
"""

import difflib
import functools
import json
import os
from pathlib import Path
from typing import Any

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI

from moa_graph.errors import MissingCredentials, MoAConfigError
from moa_graph.limits import Admission, admission_for
from moa_graph.local_server import local_base_url
from moa_graph.openai_clients import EmbeddedChatOpenAI, loop_local_client

__all__ = [
    "clear_model_cache",
    "load_chat_model",
    "model_label",
]


LOCAL_PROVIDER = "local"


def load_chat_model(
    spec: str,
    *,
    temperature: float,
    max_tokens: int,
    streaming: bool = True,
    model_kwargs: dict[str, Any] | None = None,
) -> BaseChatModel:
    """Create (once per distinct arguments) the chat model a spec names.

    Args:
        spec: ``"provider:model"``; only the first ``:`` separates the provider, so Bedrock
            ids such as ``"bedrock_converse:anthropic.claude-3-haiku-20240307-v1:0"`` work.
        temperature: Sampling temperature passed to the provider.
        max_tokens: Most tokens the call may generate.
        streaming: False forces plain (non-streaming) HTTP calls even while the graph
            streams; proposers use it so that their answers arrive whole, with usage.
        model_kwargs: More constructor arguments (``ModelSpec.model_kwargs``), e.g.
            ``{"top_p": 0.9, "base_url": "http://localhost:11434/v1"}``.

    Returns:
        A LangChain chat model. For ``local:`` specs the embedded server is started first.

    Raises:
        MoAConfigError: The provider's package or credentials are missing (the message names
            the variable to set), or the provider rejects the settings; it names the spec.
        LocalModelError: The embedded model server could not start.
    """
    key = _key(spec, temperature, max_tokens, streaming, model_kwargs)
    model = _load(*key)
    _made.add(key)
    return model


_made: set[tuple[str, float, int, bool, str]] = set()
"""Arguments of every model `load_chat_model` has created in this process (`_load` keeps the
last 64; one evicted since was still created once, so its package is imported and its
embedded server started, and creating it again cannot block)."""


def is_made(
    spec: str,
    *,
    temperature: float,
    max_tokens: int,
    streaming: bool = True,
    model_kwargs: dict[str, Any] | None = None,
) -> bool:
    """Return True when `load_chat_model` has created a model with these arguments before.

    Then creating it again cannot block: no embedded server to start, no provider package to
    import.
    """
    return _key(spec, temperature, max_tokens, streaming, model_kwargs) in _made


def _key(
    spec: str,
    temperature: float,
    max_tokens: int,
    streaming: bool,
    model_kwargs: dict[str, Any] | None,
) -> tuple[str, float, int, bool, str]:
    return spec, temperature, max_tokens, streaming, json.dumps(model_kwargs or {}, sort_keys=True)


def clear_model_cache() -> None:
    """Forget the models created so far (they keep the environment of their creation)."""
    _load.cache_clear()
    _made.clear()


def accepts_seed(model: BaseChatModel) -> bool:
    """Return True when `model`'s provider takes a per-call ``seed`` (e.g. OpenAI-compatible)."""
    return "seed" in type(model).model_fields


@functools.lru_cache(maxsize=64)
def _load(
    spec: str, temperature: float, max_tokens: int, streaming: bool, extra: str
) -> BaseChatModel:
    provider, model = spec.split(":", 1)
    model_kwargs: dict[str, Any] = json.loads(extra)
    kwargs: dict[str, Any] = {
        **model_kwargs,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "disable_streaming": not streaming,
    }
    if provider in ("bedrock_converse", "bedrock"):
        from botocore.config import Config  # only Bedrock users pay for importing it

        # MoAContext.retries retries; botocore's own would multiply them.
        kwargs.setdefault("config", Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    if provider in (LOCAL_PROVIDER, "openai"):
        kwargs["max_retries"] = 0  # MoAContext.retries retries; the SDK's would multiply them
        # One connection pool per event loop: langchain-openai's default async client is one
        # per base URL for the process, and its kept-alive connections die with the first
        # loop (a second asyncio.run got "Event loop is closed").
        kwargs.setdefault("http_async_client", loop_local_client())
        # langchain-openai asks a server other than api.openai.com for the token usage of a
        # streamed answer only when told to; servers that ignore it (llama.cpp) send none.
        kwargs.setdefault("stream_usage", True)
    if provider == LOCAL_PROVIDER:
        kwargs.update(model_provider="openai", base_url=local_base_url(model), api_key="local")
        model = Path(model).stem  # the server's alias: "smollm2", or a GGUF file's name
    else:
        _require_credentials(provider, spec)
        kwargs["model_provider"] = provider
    compatible_server = _openai_base_url() or model_kwargs.get("base_url")
    if provider == LOCAL_PROVIDER or (provider == "openai" and compatible_server):
        # langchain-openai sends the limit only as `max_completion_tokens`, which
        # llama-cpp-python's server (and other OpenAI-compatible servers) ignore.
        kwargs["extra_body"] = {**kwargs.get("extra_body", {}), "max_tokens": max_tokens}
    _check_settings(spec, provider, model_kwargs)
    try:
        chat_model: BaseChatModel
        if provider == LOCAL_PROVIDER:
            kwargs.pop("model_provider")
            chat_model = EmbeddedChatOpenAI(model=model, **kwargs)
        else:
            chat_model = init_chat_model(model, **kwargs)
    except ImportError as exc:
        raise MoAConfigError(f"{spec!r}: {exc}") from exc
    except Exception as exc:  # provider constructors raise assorted types for bad settings
        raise MoAConfigError(f"{spec!r}: cannot create the model: {exc}") from exc
    return chat_model


def _check_settings(spec: str, provider: str, settings: dict[str, Any]) -> None:
    """Refuse a spec's settings its provider's chat model does not take, before any call.

    The OpenAI SDK would fail at the first call with a bare ``TypeError`` (``temp=0.5``);
    providers not known here are left to their own checks.

    Raises:
        MoAConfigError: Naming the setting, the closest valid one, and the valid ones.
    """
    known = _settings_of(provider)
    for key in settings:
        if known is not None and key not in known:
            close = [k for k in sorted(known) if k.startswith(key)] or difflib.get_close_matches(
                key, sorted(known), n=1
            )
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise MoAConfigError(
                f"{spec!r}: {key}= is not a setting of its chat model; {hint}it takes "
                f"{', '.join(sorted(known))} (server-specific keys go in extra_body)"
            )


def takes_setting(model: str, name: str) -> bool:
    """Return True when the chat model of `model` (``"provider:model"``) takes `name`.

    Unknown providers are taken to accept it (their own checks apply when the model is made).
    """
    known = _settings_of(model.split(":", 1)[0])
    return known is None or name in known


@functools.cache
def _settings_of(provider: str) -> frozenset[str] | None:
    """The constructor arguments (names and aliases) of a provider's chat model, if known."""
    if provider in (LOCAL_PROVIDER, "openai"):
        fields = ChatOpenAI.model_fields
    elif provider == "bedrock_converse":
        from langchain_aws import ChatBedrockConverse  # only Bedrock users pay for importing it

        fields = ChatBedrockConverse.model_fields
    else:
        return None
    names = {*fields, *(f.alias for f in fields.values() if f.alias)}
    return frozenset(names - _INTERNAL)


_INTERNAL = frozenset(
    {"client", "async_client", "root_client", "root_async_client", "callbacks", "cache",
     "verbose", "tags", "metadata", "custom_get_token_ids", "rate_limiter", "profile", "name",
     "callback_manager", "output_version"}
)  # fmt: skip
"""Chat model fields that are LangChain's machinery, not a model's settings."""


def missing_credentials(model: str) -> str | None:
    """Return what a model's provider lacks (which variable to set), or None when it has it.

    Args:
        model: Model text, ``"provider:model"``.
    """
    provider = model.split(":", 1)[0]
    try:
        _require_credentials(provider, model)
    except MissingCredentials as exc:
        return str(exc)
    return None


def _require_credentials(provider: str, spec: str) -> None:
    """Raise `MissingCredentials` naming what to set, when a provider's credentials are missing."""
    if provider == "openai" and not os.environ.get("OPENAI_API_KEY"):
        raise MissingCredentials(
            f"{spec!r}: the OpenAI provider needs an API key: set OPENAI_API_KEY. For an "
            "OpenAI-compatible server (vLLM, Ollama, Together) set OPENAI_BASE_URL too, and any "
            "non-empty OPENAI_API_KEY if the server checks none"
        )
    if provider in ("bedrock_converse", "bedrock"):
        import boto3  # only Bedrock users pay for importing it

        session = boto3.Session()
        if not (os.environ.get("AWS_REGION") or session.region_name):
            raise MissingCredentials(
                f"{spec!r}: Amazon Bedrock needs a region: set AWS_DEFAULT_REGION (or AWS_REGION)"
            )
        if session.get_credentials() is None:
            raise MissingCredentials(
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


def with_call_settings(
    runnable: Runnable[Any, Any],
    model: BaseChatModel,
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> Runnable[Any, Any]:
    """Return `runnable` (`model`, maybe bound) with one call's temperature and token bound.

    The keywords are the provider's own: ``maxTokens`` for Bedrock Converse, ``max_tokens``
    otherwise (langchain-openai sends it as ``max_completion_tokens``, and an
    OpenAI-compatible server's model carries its bound in ``extra_body`` too, see
    `load_chat_model`). None leaves a setting as the model has it.
    """
    settings: dict[str, Any] = {} if temperature is None else {"temperature": temperature}
    if max_tokens is not None:
        bedrock = type(model).__name__ == "ChatBedrockConverse"  # without importing boto3
        settings["maxTokens" if bedrock else "max_tokens"] = max_tokens
        extra_body = getattr(model, "extra_body", None)
        if isinstance(extra_body, dict) and "max_tokens" in extra_body:
            settings["extra_body"] = {**extra_body, "max_tokens": max_tokens}
    return runnable.bind(**settings) if settings else runnable


def is_local(model: str) -> bool:
    """Return True for a spec of the embedded model (``local:...``)."""
    return model.split(":", 1)[0] == LOCAL_PROVIDER


def call_admission(
    model: str, *, rpm: dict[str, float], tpm: dict[str, int], max_tokens: int
) -> Admission | None:
    """Return what a call of `model` waits for: its rates, and the embedded server's capacity.

    Args:
        model: Model text, ``"provider:model"``.
        rpm: Requests per minute by provider or model (``MoAContext.rpm``).
        tpm: Tokens per minute by provider or model (``MoAContext.tpm``).
        max_tokens: Most tokens the call may generate (its token reservation).

    Returns:
        The `moa_graph.limits.Admission`, or None when nothing limits the call.
    """
    server = model if is_local(model) else None
    return admission_for(model, rpm=rpm, tpm=tpm, server=server, max_tokens=max_tokens)
