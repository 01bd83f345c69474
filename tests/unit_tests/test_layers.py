import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from moa_graph.layers import layer_references
from moa_graph.references import inject_references
from moa_graph.state import Proposal


def record(layer: int, index: int, content: str | None) -> Proposal:
    return Proposal(layer=layer, index=index, model="m", sample=0, seed=None,
                    status="ok" if content else "failed", content=content,
                    error=None if content else "E: x", usage=None, latency_s=0.1,
                    selected=False)  # fmt: skip


def test_inject_references_adds_a_system_message_with_numbered_references() -> None:
    messages = [HumanMessage("q")]
    out = inject_references(messages, ["alpha", "beta"], "PROMPT")
    assert out == [SystemMessage("PROMPT\n1. alpha\n2. beta"), HumanMessage("q")]
    assert messages == [HumanMessage("q")]


def test_inject_references_appends_to_an_existing_system_message() -> None:
    system = SystemMessage("Be terse.", id="s1")
    out = inject_references([system, HumanMessage("q")], ["alpha"], "PROMPT")
    assert out[0].content == "Be terse.\n\nPROMPT\n1. alpha"
    assert out[0].id == "s1"
    assert system.content == "Be terse."


def test_inject_references_refuses_an_empty_reference_list() -> None:
    with pytest.raises(ValueError, match="at least one reference"):
        inject_references([HumanMessage("q")], [], "PROMPT")


def test_layer_references_keep_order_and_skip_failures() -> None:
    proposals = [record(1, 0, "a"), record(1, 1, None), record(1, 2, "c"), record(2, 0, "z")]
    assert layer_references(proposals, 1) == ["a", "c"]
    assert layer_references(proposals, 2) == ["z"]
