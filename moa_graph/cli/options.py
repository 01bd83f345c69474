"""Options shared by the commands: the models and MoA settings, and how calls are made."""

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args

from moa_graph.context import AggregatorMode, MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.presets import PRESET_DESCRIPTIONS, PRESETS


def model_options() -> argparse.ArgumentParser:
    """Return the parent parser of the models and their shared settings (every command)."""
    models = argparse.ArgumentParser(add_help=False)
    add = models.add_argument
    add(
        "--context",
        metavar="FILE.json",
        type=Path,
        help="MoAContext settings as a JSON object (any field, model specs as objects); "
        "the options below override it",
    )
    add(
        "--proposer",
        action="append",
        metavar="SPEC",
        help="proposer, repeatable (default: 3 x local:smollm2). A model spec "
        "'provider:model', optionally followed by key=value settings in the same quoted "
        "argument: n (samples), temperature, max_tokens, timeout_s, system_prompt, label; "
        "other keys go to the model (e.g. top_p=0.9). Example: "
        "--proposer 'local:smollm2 n=3 temperature=1.0'",
    )
    add("--aggregator", metavar="SPEC", help="aggregator model spec (same form as --proposer)")
    add("--rounds", type=int, help="proposer layers before the aggregator")
    add("--temperature", type=float, help="sampling temperature")
    add("--max-tokens", type=int, help="most tokens per model call")
    add("--debug", action="store_true", help="show tracebacks")
    return models


def run_options(models: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Return the parent parser of one MoA shape (ask, chat, batch), on top of `models`."""
    common = argparse.ArgumentParser(add_help=False, parents=[models])
    add = common.add_argument
    add(
        "--preset",
        choices=sorted(PRESETS),
        help="a named MoA shape; the options below override it. "
        + "; ".join(f"{name}: {text}" for name, text in PRESET_DESCRIPTIONS.items()),
    )
    add(
        "--aggregator-mode",
        "--mode",
        dest="aggregator_mode",
        choices=get_args(AggregatorMode),
        help="how the proposals become the answer (default synthesize)",
    )
    add("--seed", type=int, help="derive every call's seed from this (default: fresh seeds)")
    add("--first-k", type=int, help="go on once this many proposers of a layer have answered")
    return common


def add_call_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of how calls are made: rates, retries, timeout, prices."""
    add = parser.add_argument
    add(
        "--rpm",
        action="append",
        default=[],
        metavar="SPEC=N",
        help="requests per minute for a provider or model, e.g. openai=600 (repeatable)",
    )
    add(
        "--tpm",
        action="append",
        default=[],
        metavar="SPEC=N",
        help="tokens per minute for a provider or model (repeatable)",
    )
    add("--retries", type=int, help="retries per call on 429, 5xx and timeouts (default 2)")
    add(
        "--proposer-timeout-s",
        "--timeout",
        dest="timeout",
        type=float,
        help="seconds per proposer call attempt, counted once it is admitted (default 120)",
    )
    add(
        "--prices",
        type=Path,
        metavar="FILE",
        help='JSON of USD per million tokens by model: {"openai:gpt-4o-mini": {"input": 0.15, '
        '"output": 0.6}}',
    )


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """Return the MoAContext fields the --context file and the options give (not validated).

    The options win over the file; fields given by neither fall back to ``MOA_*`` variables
    when the context is built.
    """
    settings: dict[str, Any] = _read_context_file(args.context) if args.context else {}
    for name in ("rpm", "tpm"):
        if getattr(args, name, None):
            settings[name] = dict(_rate(name, text) for text in getattr(args, name))
    given = {
        "proposers": args.proposer,
        "aggregator": args.aggregator,
        "rounds": args.rounds,
        "aggregator_mode": getattr(args, "aggregator_mode", None),
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "seed": getattr(args, "seed", None),
        "first_k": getattr(args, "first_k", None),
        "retries": getattr(args, "retries", None),
        "proposer_timeout_s": getattr(args, "timeout", None),
    }
    settings.update({name: value for name, value in given.items() if value is not None})
    return settings


def context_from(args: argparse.Namespace) -> MoAContext:
    """Return the settings of the options, under the ``--preset``'s shape when one is given.

    Raises:
        MoAConfigError: A setting is invalid; the message names it.
    """
    settings = settings_from(args)
    if getattr(args, "preset", None):
        return MoAContext.preset(args.preset, **settings)
    return MoAContext(**settings)


def _read_context_file(path: Path) -> dict[str, Any]:
    try:
        settings = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MoAConfigError(f"--context {path}: cannot read a JSON object: {exc}") from None
    known = {f.name for f in fields(MoAContext)}
    if not isinstance(settings, dict) or not set(settings) <= known:
        unknown = sorted(set(settings) - known) if isinstance(settings, dict) else settings
        raise MoAConfigError(
            f"--context {path}: unknown settings {unknown}; MoAContext takes {sorted(known)}"
        )
    return settings


def _rate(name: str, text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    try:
        if not sep or not key.strip():
            raise ValueError(text)
        return key.strip(), float(value)
    except ValueError:
        raise MoAConfigError(
            f"--{name} {text!r}: write it as SPEC=N, e.g. --{name} openai=600"
        ) from None
