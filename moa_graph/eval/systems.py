"""The systems an evaluation compares: presets, single models, and named settings.

Every system is a `MoAContext` run by the same graph, so single models and MoA variants go
through the same code, records and accounting:

- a preset name (``moa``, ``moa-lite``, ``self-moa``, ``self-moa-seq``, ``usc``, ``vote``)
  applied to the configured models (the base settings). Self-MoA presets sample the first
  configured proposer (Li et al., arXiv 2502.00674, sample the best single model).
- ``single:SPEC``: that model alone, one call (one proposer, ``vote`` over one answer, which
  returns it verbatim). Greedy (temperature 0) unless the spec sets a temperature, e.g.
  ``single:local:smollm2 temperature=0.7`` for a sampled single model.
- ``best-single``: every distinct configured proposer alone, as configured but once and greedy
  (in the place ``best-single`` is named); the report names the best of them on this run and
  says that it was chosen after seeing the results.
- ``json:FILE``: the systems of a JSON object ``{"name": {MoAContext fields}}``; a system may
  also name a ``"preset"``.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.presets import PRESETS
from moa_graph.spec import ModelSpec, to_model_spec

BEST_SINGLE = "best-single"
SINGLE = "single:"
SYSTEMS_FILE = "json:"


@dataclass(frozen=True)
class System:
    """One system under evaluation.

    Attributes:
        name: As named in ``--systems`` (or the JSON file's key).
        context: The settings its runs use.
        description: One line for the report (shape and models).
        single: True for one model alone (a ``best-single`` candidate).
    """

    name: str
    context: MoAContext
    description: str
    single: bool = False


def parse_systems(names: list[str], base: dict[str, Any]) -> tuple[list[System], bool]:
    """Return the systems `names` ask for, and whether ``best-single`` was asked for.

    Args:
        names: Entries of ``--systems``: preset names, ``single:SPEC``, ``best-single``,
            ``json:FILE``.
        base: MoAContext fields from the command line, ``--context`` and the caller (the
            configured models); ``MOA_*`` variables fill the rest.

    Raises:
        MoAConfigError: An unknown or duplicate system, a bad spec or settings, or a system
            with ``review`` (an evaluation runs unattended); raised before any call.
    """
    if not names:
        raise MoAConfigError("systems is empty: name at least one, e.g. single:local:smollm2")
    systems: list[System] = []
    best_single_at: int | None = None
    for name in names:
        if name == BEST_SINGLE:
            best_single_at = len(systems)
        elif name.startswith(SINGLE):
            systems.append(single_system(name, to_model_spec(name, name[len(SINGLE) :]), base))
        elif name.startswith(SYSTEMS_FILE):
            systems.extend(_from_file(Path(name[len(SYSTEMS_FILE) :]), base))
        elif name in PRESETS:
            systems.append(_preset_system(name, name, base))
        else:
            raise MoAConfigError(
                f"system {name!r} is unknown: use a preset ({', '.join(sorted(PRESETS))}), "
                f"'single:SPEC', '{BEST_SINGLE}' or 'json:FILE'"
            )
    if best_single_at is not None:  # its candidates go where it was named
        present = {s.name for s in systems}
        candidates = []
        for spec in _distinct_proposers(base):
            # The proposer as configured (role, max_tokens, model_kwargs), once and greedy.
            alone = ModelSpec(**{**spec.to_dict(), "n": 1, "temperature": None})
            name = SINGLE + spec.name
            if name not in present:
                candidates.append(single_system(name, alone, base))
        systems[best_single_at:best_single_at] = candidates
    seen: set[str] = set()
    for system in systems:
        if system.name in seen:
            raise MoAConfigError(f"system {system.name!r} is named twice in systems")
        seen.add(system.name)
        if system.context.review:
            raise MoAConfigError(
                f"system {system.name!r} sets review: an evaluation runs unattended; drop it"
            )
    return systems, best_single_at is not None


def file_slug(name: str) -> str:
    """Return a system name as a file name (other characters than ``[A-Za-z0-9_.-]`` as ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "system"


def single_system(name: str, spec: ModelSpec, base: dict[str, Any]) -> System:
    """Return the system of one model alone: one call per turn, its answer verbatim.

    Greedy (temperature 0) unless `spec` sets a temperature.

    Raises:
        MoAConfigError: A spec with ``n`` > 1 (use ``vote`` or ``self-moa``), or bad settings.
    """
    if spec.n != 1:
        raise MoAConfigError(
            f"{name}: a single model answers once (n=1); for samples use self-moa or vote"
        )
    fields = spec.to_dict()
    if spec.temperature is None:
        fields["temperature"] = 0.0
    temperature = fields["temperature"]
    context = _context(
        name,
        {**base, "proposers": [ModelSpec(**fields)], "layer_proposers": None, "rounds": 1,
         "aggregator_mode": "vote", "answer_pattern": None, "first_k": None,
         "min_proposals": 1},
    )  # fmt: skip
    how = "greedy" if temperature == 0 else f"sampled at temperature {temperature}"
    return System(name, context, f"{spec.name} alone, {how}", single=True)


def _preset_system(name: str, preset: str, settings: dict[str, Any]) -> System:
    settings = dict(settings)
    if preset.startswith("self-moa"):
        settings["proposers"] = [_distinct_proposers(settings)[0]]
        settings["layer_proposers"] = None
    try:
        context = MoAContext.preset(preset, **settings)
    except MoAConfigError as exc:
        raise MoAConfigError(f"system {name!r}: {exc}") from None
    return System(name, context, _describe(preset, context))


def _from_file(path: Path, base: dict[str, Any]) -> list[System]:
    try:
        named = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MoAConfigError(f"systems file {path}: cannot read a JSON object: {exc}") from None
    if not isinstance(named, dict) or not named:
        raise MoAConfigError(
            f"systems file {path}: expected {{'name': {{MoAContext fields}}}} with one system "
            "or more"
        )
    systems = []
    for name, fields in named.items():
        if not isinstance(fields, dict):
            raise MoAConfigError(f"systems file {path}: {name!r} must map to an object")
        fields = dict(fields)
        preset = fields.pop("preset", None)
        settings = {**base, **fields}
        if preset is not None:
            systems.append(_preset_system(name, str(preset), settings))
        else:
            context = _context(name, settings)
            systems.append(System(name, context, _describe(None, context)))
    return systems


def _context(name: str, settings: dict[str, Any]) -> MoAContext:
    try:
        return MoAContext(**settings)
    except TypeError as exc:
        raise MoAConfigError(f"system {name!r}: {exc}") from None
    except MoAConfigError as exc:
        raise MoAConfigError(f"system {name!r}: {exc}") from None


def _distinct_proposers(settings: dict[str, Any]) -> list[ModelSpec]:
    """The configured proposer specs, one per distinct name (label, else model), in order."""
    context = _context("base settings", settings)
    distinct: dict[str, ModelSpec] = {}
    for layer in range(1, context.rounds + 1):
        for spec in context.proposer_specs(layer):
            distinct.setdefault(spec.name, spec)
    return list(distinct.values())


def _describe(preset: str | None, context: MoAContext) -> str:
    specs = context.proposer_specs(1)
    proposers = ", ".join(f"{s.name} x{s.n}" if s.n > 1 else s.name for s in specs)
    shape = f"{preset}: " if preset else ""
    aggregator = (
        ""
        if context.aggregator_mode == "vote"
        else f", aggregator {context.aggregator_spec().name}"
    )
    return (
        f"{shape}{context.rounds} layer(s) of [{proposers}], {context.aggregator_mode}{aggregator}"
    )
