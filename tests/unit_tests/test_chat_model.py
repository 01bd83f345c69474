"""`ChatMoA`, MoA as a LangChain chat model: one reply, its usage and records, every entry point.

Graph logic with scripted chat models here; tests/integration_tests/test_chat_model.py shows it
working over HTTP with spec-built models.
"""

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import START, MessagesState, StateGraph

from moa_graph import ChatMoA, MoAConfigError, MoAContext, ModelSpec, ProposerQuorumError
from moa_graph.answer_stream import AnswerStream
from tests.fakes import ScriptedChatModel


def panel(*errors: str | None, reply: str = "final answer") -> ChatMoA:
    proposers = [ScriptedChatModel(reply=f"p{i}", error=e) for i, e in enumerate(errors)]
    return ChatMoA(proposers=proposers, aggregator=ScriptedChatModel(reply=reply))


def test_invoke_returns_one_message_with_the_whole_runs_usage_and_records() -> None:
    reply = panel(None, None).invoke("Name a colour.")
    assert isinstance(reply, AIMessage) and reply.content == "final answer"
    meta = reply.response_metadata
    assert meta["model_name"] == "moa" and meta["aggregation"]["mode"] == "synthesize"
    assert [p["status"] for p in meta["proposals"]] == ["ok", "ok"]
    assert (meta["proposals_asked"], meta["proposals_answered"], meta["degraded"]) == (2, 2, False)
    usage = reply.usage_metadata
    aggregator = meta["aggregation"]["usage"]
    proposed = sum(p["tokens"] for p in meta["proposals"])
    assert usage is not None and aggregator is not None
    # every call of the run: both proposers and the aggregator
    assert (
        usage["total_tokens"] == proposed + aggregator["input_tokens"] + aggregator["output_tokens"]
    )


def test_a_shrunken_panel_is_said() -> None:
    meta = panel(None, "provider down").invoke("hi").response_metadata
    assert (meta["proposals_answered"], meta["proposals_asked"], meta["degraded"]) == (1, 2, True)
    assert meta["proposals"][1]["status"] == "failed"


def test_stream_yields_the_aggregators_tokens_then_the_records() -> None:
    chunks = list(panel(None, None).stream("hi"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.text for c in chunks).split() == ["final", "answer"]
    assert chunks[-1].text == "" and chunks[-1].response_metadata["proposals_asked"] == 2
    joined = chunks[0]
    for chunk in chunks[1:]:
        joined += chunk
    assert joined.usage_metadata == chunks[-1].usage_metadata  # counted once, at the end
    proposed = sum(p["tokens"] for p in chunks[-1].response_metadata["proposals"])
    assert joined.usage_metadata is not None and joined.usage_metadata["total_tokens"] >= proposed


async def test_async_batch_and_a_chain() -> None:
    moa = panel(None, None)
    assert (await moa.ainvoke("hi")).content == "final answer"
    assert "".join([c.text async for c in moa.astream("hi")]).split() == ["final", "answer"]
    assert [m.content for m in await moa.abatch(["a", "b"])] == ["final answer"] * 2
    chain = ChatPromptTemplate.from_template("Q: {q}") | moa | StrOutputParser()
    assert await chain.ainvoke({"q": "x"}) == "final answer"


async def test_as_the_model_of_a_node_its_tokens_stream_once() -> None:
    moa = panel(None, None)

    async def answer(state: MessagesState) -> dict:
        return {"messages": [await moa.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState).add_node("answer", answer)
    graph = graph.add_edge(START, "answer").compile()
    tokens = [
        chunk.text
        async for chunk, meta in graph.astream(
            {"messages": [("user", "hi")]}, stream_mode="messages"
        )
        if chunk.text
    ]
    assert "".join(tokens).split() == ["final", "answer"]  # not twice


def test_a_failed_run_raises_with_the_records() -> None:
    with pytest.raises(ProposerQuorumError) as caught:
        panel("down", "down").invoke("hi")
    assert [r["status"] for r in caught.value.records] == ["failed", "failed"]


def test_settings_come_from_the_context() -> None:
    moa = ChatMoA(
        proposers=[ScriptedChatModel(reply="42"), ScriptedChatModel(reply="42")],
        aggregator=ScriptedChatModel(reply="never called"),
        context=MoAContext(aggregator_mode="vote"),
    )
    reply = moa.invoke("What is 40 + 2?")
    assert reply.content == "42" and reply.response_metadata["aggregation"]["calls"] == 0


def test_a_run_setting_given_as_an_argument_says_where_it_goes() -> None:
    with pytest.raises(ValueError, match=r"ChatMoA\(context=MoAContext\(temperature=\.\.\.\)\)"):
        ChatMoA(temperature=0)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        ChatMoA(temprature=0)


def test_proposers_and_aggregator_take_specs_as_moacontext_does() -> None:
    spec = ModelSpec(model="openai:a", n=2)
    moa = ChatMoA(proposers=["openai:a", spec], aggregator="openai:b",
                  context=MoAContext(max_tokens=16))  # fmt: skip
    assert moa.context is not None and moa.proposers is None and moa.aggregator is None
    assert (moa.context.proposers, moa.context.aggregator) == (["openai:a", spec], "openai:b")
    assert moa.context.max_tokens == 16  # the rest of the context is kept
    layered = ChatMoA(proposers=[["openai:a"], ["openai:b", "openai:c"]])
    assert layered.context is not None and layered.context.rounds == 2
    assert layered.context.layer_proposers == [["openai:a"], ["openai:b", "openai:c"]]
    with pytest.raises(MoAConfigError, match="mixes model specs and chat model instances"):
        ChatMoA(proposers=["openai:a", ScriptedChatModel(reply="x")])


def test_a_calls_name_and_id_are_streamed_once() -> None:
    # llama.cpp's server repeats them on every fragment; merged they would read "addadd".
    stream = AnswerStream()
    node = {"langgraph_node": "aggregator"}
    fragments = [
        AIMessageChunk("", tool_call_chunks=[tool_call_chunk(name="add", args=args, id="c1",
                                                             index=0)])
        for args in ('{"a": ', "3}")
    ]  # fmt: skip
    chunks = [stream.chunk((fragment, node)) for fragment in fragments]
    whole = chunks[0] + chunks[1]
    assert whole.tool_calls == [{"name": "add", "args": {"a": 3}, "id": "c1", "type": "tool_call"}]
    assert stream.chunk((AIMessageChunk("proposal"), {"langgraph_node": "proposer"})) is None
