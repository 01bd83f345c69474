"""The fusion judge's analysis: its schema and the two prompts of ``aggregator_mode="analyze"``.

The design of the 2026 fusion gateways (OpenRouter's Fusion router, LiteLLM's
``fusion``: see docs/guides/variants.md): the judge first writes a typed comparison of the
proposals at temperature 0, with the sources anonymous ("Source 1", ...), then writes the answer
from that analysis and the proposals. The analysis is made with structured output (one forced
tool, `moa_graph.structured`), so small models fill it under a grammar.
"""

from typing import Any

_TEXT: dict[str, Any] = {"type": "string", "maxLength": 200}
_SOURCE: dict[str, Any] = {"type": "integer", "minimum": 1}
_MOST = 4
_TEXTS: dict[str, Any] = {"type": "array", "items": _TEXT, "maxItems": _MOST}

ANALYSIS_TOOL = "analysis"
"""The name of the forced tool whose arguments are the analysis."""

ANALYSIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A comparison of the sources' responses, written before the answer.",
    "properties": {
        "consensus": {**_TEXTS, "description": "Points the sources agree on."},
        "contradictions": {
            "type": "array",
            "maxItems": _MOST,
            "description": "Topics the sources disagree on, with each source's stance.",
            "items": {
                "type": "object",
                "properties": {
                    "topic": _TEXT,
                    "stances": {
                        "type": "array",
                        "maxItems": 8,
                        "items": {
                            "type": "object",
                            "properties": {
                                "source": _SOURCE,
                                "stance": _TEXT,
                            },
                            "required": ["source", "stance"],
                        },
                    },
                },
                "required": ["topic", "stances"],
            },
        },
        "partial_coverage": {
            "type": "array",
            "maxItems": _MOST,
            "description": "Points only some sources cover.",
            "items": {
                "type": "object",
                "properties": {
                    "point": _TEXT,
                    "sources": {"type": "array", "items": _SOURCE, "maxItems": _MOST},
                },
                "required": ["point", "sources"],
            },
        },
        "unique_insights": {
            "type": "array",
            "maxItems": _MOST,
            "description": "Insights only one source has.",
            "items": {
                "type": "object",
                "properties": {"insight": _TEXT, "source": _SOURCE},
                "required": ["insight", "source"],
            },
        },
        "blind_spots": {**_TEXTS, "description": "What every source missed or got wrong."},
        "assessments": {
            "type": "array",
            "maxItems": 8,
            "description": "One sentence on each source's response.",
            "items": {
                "type": "object",
                "properties": {"source": _SOURCE, "assessment": _TEXT},
                "required": ["source", "assessment"],
            },
        },
    },
    "required": [
        "consensus",
        "contradictions",
        "partial_coverage",
        "unique_insights",
        "blind_spots",
        "assessments",
    ],
}
"""JSON Schema of the analysis (the fields of OpenRouter Fusion's, plus an assessment per
source); sources are the 1-based numbers of the responses as shown. Lists hold at most 4
entries (8 assessments) and texts 200 characters, so that a small model's analysis, filled
under a grammar, ends within ``judge_max_tokens`` (measured on the embedded model: 277 and 409
tokens)."""

ANALYZE_PROMPT = (
    "You are the judge of a panel. The responses below answer the latest user query; they come "
    "from anonymous sources, Source 1 to Source {count}, numbered as shown. Do not answer the "
    "query yet: compare the responses. List the points they agree on, where they contradict "
    "each other (with each source's stance), points only some of them cover, insights only one "
    "has, what all of them missed or got wrong (the consensus can be wrong: say so when you "
    "know better), and one sentence on each source.{criteria}\n\n"
    "Responses from models:"
)

ANSWER_FROM_ANALYSIS_PROMPT = (
    "You are the judge of a panel. Write the best answer to the latest user query from the "
    "responses below and your analysis of them: keep what the sources agree on unless your "
    "analysis shows it is wrong, settle their contradictions, add the unique insights that hold "
    "up and cover the blind spots. Do not mention the sources or the analysis.{criteria}\n\n"
    "Your analysis:\n{analysis}\n\n"
    "Responses from models:"
)


def criteria_text(criteria: str | None) -> str:
    """The sentence that asks the judge to weigh `criteria` (``judge_criteria``), or ``""``."""
    return f" Weigh these criteria: {criteria.strip()}" if criteria else ""
