"""Named MoA shapes from the literature: the caller names the models, a preset sets the shape.

Used by `MoAContext.preset`, the CLI's ``--preset`` and Studio's saved assistants.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from moa_graph.errors import MoAConfigError
from moa_graph.spec import ModelSpec, to_model_spec

SELF_MOA_SAMPLES = 6
"""Samples of the one model in Self-MoA (Li et al., arXiv 2502.00674, section 3: k = 6)."""

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        name: MappingProxyType(settings)
        for name, settings in {
            "moa": {"rounds": 2, "aggregator_mode": "synthesize"},
            "moa-lite": {"rounds": 1, "aggregator_mode": "synthesize"},
            "self-moa": {"rounds": 1, "aggregator_mode": "synthesize"},
            "self-moa-seq": {"rounds": 1, "aggregator_mode": "sequential"},
            "usc": {"rounds": 1, "aggregator_mode": "select"},
            "vote": {"rounds": 1, "aggregator_mode": "vote"},
            "fusion-quality": {
                "rounds": 2,
                "aggregator_mode": "analyze",
                "judge_criteria": "correctness first, then completeness",
            },
            "fusion-budget": {
                "rounds": 1,
                "aggregator_mode": "analyze",
                "max_tokens": 256,
                "judge_criteria": "correctness first, then brevity",
            },
        }.items()
    }
)
"""Each preset's settings, read-only; the Self-MoA presets also turn the one proposer into k
samples."""

PRESET_DESCRIPTIONS = {
    "moa": "the paper's MoA: 2 proposer layers then the aggregator (arXiv 2406.04692)",
    "moa-lite": "MoA-Lite: 1 proposer layer then the aggregator (arXiv 2406.04692)",
    "self-moa": f"Self-MoA: {SELF_MOA_SAMPLES} samples of one model, synthesized "
    "(arXiv 2502.00674)",
    "self-moa-seq": f"Self-MoA-Seq: {SELF_MOA_SAMPLES} samples of one model, aggregated in a "
    "sliding window (arXiv 2502.00674)",
    "usc": "Universal Self-Consistency: the aggregator picks the most consistent proposal "
    "(arXiv 2311.17311)",
    "vote": "majority vote over the proposals' answers, no aggregator call (arXiv 2402.05120)",
    "fusion-quality": "the fusion judge over 2 proposer layers: a typed analysis at temperature "
    "0, then the answer; rubric 'correctness first, then completeness'",
    "fusion-budget": "the fusion judge over 1 layer, every call at most 256 tokens; rubric "
    "'correctness first, then brevity'",
}


def _operators_proposer() -> list[Any]:
    """The first of the operator's proposers (``MOA_PROPOSERS``, else the embedded model)."""
    from moa_graph.context import MoAContext  # it imports this module

    return [MoAContext().proposers[0]]


def preset_settings(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Return the MoAContext fields of preset `name`, with the caller's `overrides` on top.

    For ``self-moa`` and ``self-moa-seq`` the proposers must be one spec (default the first of
    the operator's ``MOA_PROPOSERS``, else the embedded model); when its ``n`` is 1 it becomes
    `SELF_MOA_SAMPLES`.

    Args:
        name: A key of `PRESETS`.
        overrides: MoAContext fields given by the caller; they win over the preset's values.

    Raises:
        MoAConfigError: Unknown preset, or a Self-MoA preset given several proposers.
    """
    if name not in PRESETS:
        raise MoAConfigError(f"preset={name!r} is unknown: choose one of {sorted(PRESETS)}")
    settings = {**PRESETS[name], **overrides}
    if name.startswith("self-moa"):
        proposers = settings.get("proposers", _operators_proposer())
        if not isinstance(proposers, list) or len(proposers) != 1:
            raise MoAConfigError(
                f"preset {name!r} samples one model: give exactly one proposer, got {proposers!r}"
            )
        spec = to_model_spec("proposers[0]", proposers[0])
        if spec.n == 1:
            spec = ModelSpec(**{**spec.to_dict(), "n": SELF_MOA_SAMPLES})
        settings["proposers"] = [spec]
    return settings
