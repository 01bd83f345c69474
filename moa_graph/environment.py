"""Settings from ``MOA_<FIELD>`` environment variables, for fields left at their default."""

import json
import os
from dataclasses import MISSING, Field, fields
from typing import Any

from moa_graph.errors import MoAConfigError

ENV_PREFIX = "MOA_"


def fill_from_environment(settings: Any) -> None:
    """Set each field of the dataclass `settings` still at its default from ``MOA_<FIELD>``.

    Model lists take the comma form (``MOA_LAYER_PROPOSERS``: layers separated by ``;``) or
    JSON; ``MOA_AGGREGATOR`` model text or a JSON object; booleans ``true``/``false``.

    Raises:
        MoAConfigError: A variable's text is not a valid value; the message names it.
    """
    for f in fields(settings):
        env_name = ENV_PREFIX + f.name.upper()
        raw = os.environ.get(env_name)
        if raw is not None and raw.strip() and getattr(settings, f.name) == _default_of(f):
            setattr(settings, f.name, _parse_env(f, env_name, raw.strip()))


def _default_of(f: Field[Any]) -> Any:
    return f.default if f.default_factory is MISSING else f.default_factory()


def _parse_env(f: Field[Any], env_name: str, raw: str) -> Any:
    """Convert an environment variable's text to the value of field `f`."""
    try:
        if (
            f.name in ("proposers", "layer_proposers", "aggregator", "tools", "cascade")
            and raw[0] in "[{"
        ):
            return json.loads(raw)
        if f.name in ("proposers", "cascade"):
            return [s.strip() for s in raw.split(",") if s.strip()]
        if f.name == "layer_proposers":
            return [[s.strip() for s in layer.split(",") if s.strip()] for layer in raw.split(";")]
        if f.name in ("rpm", "tpm"):
            if raw[0] == "{":
                return json.loads(raw)
            pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
            return {key.strip(): float(value) for key, value in pairs}
        if f.type is bool:
            if raw.lower() not in _BOOLEANS:
                raise ValueError(raw)
            return _BOOLEANS[raw.lower()]
        if f.type in (int, int | None):
            return int(raw)
        if f.type is float:
            return float(raw)
    except json.JSONDecodeError as exc:
        raise MoAConfigError(f"{env_name} is not valid JSON: {exc}") from None
    except ValueError:
        raise MoAConfigError(f"{env_name}={raw!r} is not a valid value: fix or unset it") from None
    return raw


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
