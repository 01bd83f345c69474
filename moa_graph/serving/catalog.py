"""The models the API serves: ``moa``, one per preset, one per saved Studio assistant."""

import dataclasses
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openai.types import Model

from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError
from moa_graph.models import missing_credentials
from moa_graph.presets import PRESET_DESCRIPTIONS, PRESETS
from moa_graph.serving.errors import APIError
from moa_graph.spec import ModelSpec
from moa_graph.state import FIRST_STAGE
from moa_graph.trust import RequestPolicy

log = logging.getLogger(__name__)

ASSISTANTS_ENV = "MOA_SERVE_ASSISTANTS"
"""A studio/assistants.json file whose ``moa`` assistants are served as models too (unset:
none; what is served never depends on the working directory)."""

CREATED = int(time.time())
PRESET_MODEL_IDS = {name: "moa-paper" if name == "moa" else name for name in PRESETS}
"""Preset names as model ids: the preset ``moa`` is ``moa-paper``, since ``moa`` is the
default settings."""


@dataclass(frozen=True)
class ServedModel:
    """One model id of the API: MoA settings (a preset, or an assistant's saved context)."""

    id: str
    description: str
    preset: str | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def context(self, overrides: dict[str, Any]) -> MoAContext:
        """Return the settings with the request's ``moa`` object on top.

        Raises:
            MoAConfigError: An override is invalid.
        """
        if self.preset is not None:
            return MoAContext.preset(self.preset, **overrides)
        return MoAContext(**{**self.settings, **overrides})


def served_models(assistants: Path | None = None) -> dict[str, ServedModel]:
    """Return the models: ``moa`` (default settings), one per preset, one per saved assistant.

    A model whose provider credentials are missing (a saved assistant on Together without
    ``OPENAI_API_KEY``, say) is left out, with a warning in the log naming what to set.

    Args:
        assistants: A studio/assistants.json file; each ``moa`` assistant becomes a model whose
            id is its name in lower case with dashes (``"Vote (local)"`` is ``vote-local``).
    """
    models = {"moa": ServedModel("moa", "MoA with the server's default settings (MOA_*)")}
    for preset, model_id in PRESET_MODEL_IDS.items():
        models[model_id] = ServedModel(model_id, PRESET_DESCRIPTIONS[preset], preset=preset)
    if assistants is not None:
        if not assistants.is_file():
            raise MoAConfigError(f"{ASSISTANTS_ENV}={assistants}: no such file")
        for entry in json.loads(assistants.read_text()):
            # A run paused for review needs a thread; the API is stateless.
            if entry.get("graph_id") == "moa" and not entry["context"].get("review"):
                model_id = re.sub(r"[^a-z0-9]+", "-", entry["name"].lower()).strip("-")
                models[model_id] = ServedModel(
                    model_id, entry.get("description", ""), settings=entry["context"]
                )
    available = {}
    for model_id, served in models.items():
        lacking = _lacking(served)
        if lacking is None:
            available[model_id] = served
        else:
            log.warning("model %r is not served: %s", model_id, lacking)
    return available


def assistants_file() -> Path | None:
    """Return the file ``MOA_SERVE_ASSISTANTS`` names, or None when it is unset."""
    named = os.environ.get(ASSISTANTS_ENV, "").strip()
    return Path(named) if named else None


def _lacking(served: ServedModel) -> str | None:
    """What a served model's providers lack (the first missing credential), or None."""
    ctx = served.context({})
    specs = [ctx.aggregator_spec(), *ctx.proposer_specs(FIRST_STAGE)]
    specs += [s for k in range(1, ctx.rounds + 1) for s in ctx.proposer_specs(k)]
    return next((m for s in specs if (m := missing_credentials(s.model))), None)


def model_card(served: ServedModel) -> Model:
    """Return the openai `Model` object of a served model."""
    return Model(id=served.id, created=CREATED, object="model", owned_by="moa-graph")


def find_model(catalog: dict[str, ServedModel], model_id: str) -> ServedModel:
    """Return the served model `model_id`.

    Raises:
        APIError: 404 ``model_not_found``.
    """
    if model_id not in catalog:
        raise APIError(
            404,
            f"The model {model_id!r} does not exist; GET /v1/models lists them",
            "invalid_request_error",
            param="model",
            code="model_not_found",
        )
    return catalog[model_id]


def report_oversized(catalog: dict[str, ServedModel], policy: RequestPolicy) -> list[str]:
    """Log a warning for each served model whose own settings are over `policy`'s budgets.

    Requests to such a model get 400 until the operator raises the budget (``MOA_SERVE_*``)
    or the request asks for less (e.g. fewer rounds).

    Returns:
        The warnings, one per model.
    """
    warnings = []
    for served in catalog.values():
        try:
            policy.check_budget(served.context({}))
        except MoAConfigError as exc:
            warnings.append(f"model {served.id!r} does not fit this server's budget: {exc}")
            log.warning(warnings[-1])
    return warnings


def local_models(catalog: dict[str, ServedModel]) -> set[str]:
    """Return the embedded models (``local:NAME``) the served models use, as NAME."""
    return {
        s.model.split(":", 1)[1] for s in operator_specs(catalog) if s.model.startswith("local:")
    }


def operator_labels(catalog: dict[str, ServedModel]) -> set[str]:
    """Return the labels of every model the served models call (as their records name them)."""
    return {spec.name for spec in operator_specs(catalog)}


def operator_specs(catalog: dict[str, ServedModel]) -> list[ModelSpec]:
    """Return every model spec of the served models' own settings.

    Proposers of each layer, a cascade's first stage, the aggregator.
    """
    specs: list[ModelSpec] = []
    for served in catalog.values():
        ctx = served.context({})
        specs.append(ctx.aggregator_spec())
        specs += [s for k in range(FIRST_STAGE, ctx.rounds + 1) for s in ctx.proposer_specs(k)]
    return specs
