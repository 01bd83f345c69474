"""moa-graph: Mixture-of-Agents (arXiv 2406.04692) as a LangGraph graph."""

from importlib.metadata import version as _version

from moa_graph.chat_model import ChatMoA
from moa_graph.context import MoAContext
from moa_graph.errors import (
    AggregatorError,
    DegradedAnswer,
    LocalModelError,
    MoAConfigError,
    ProposerQuorumError,
    StructuredOutputError,
)
from moa_graph.graph import build_moa_graph, proposer_cache_policy
from moa_graph.presets import PRESETS
from moa_graph.prompts import AGGREGATE_AND_SYNTHESIZE_PROMPT
from moa_graph.spec import ModelSpec
from moa_graph.state import Aggregation, Proposal

__version__ = _version("moa-graph")
"""The installed version (from the package's metadata: pyproject.toml is its one home)."""

__all__ = [
    "AGGREGATE_AND_SYNTHESIZE_PROMPT",
    "PRESETS",
    "Aggregation",
    "AggregatorError",
    "ChatMoA",
    "DegradedAnswer",
    "LocalModelError",
    "MoAConfigError",
    "MoAContext",
    "ModelSpec",
    "Proposal",
    "ProposerQuorumError",
    "StructuredOutputError",
    "__version__",
    "build_moa_graph",
    "proposer_cache_policy",
]
