"""MoA as a LangChain chat model: `ChatMoA` runs the MoA graph wherever "a chat model" goes.

`ChatMoA` is a `BaseChatModel` over a compiled `build_moa_graph` graph: ``invoke``,
``ainvoke``, ``stream``, ``astream``, ``batch`` and LCEL chains run the whole MoA and return
one `AIMessage`. It does not re-implement the algorithm. The message's ``usage_metadata`` is
the sum of every call of the run (what you pay for), and its ``response_metadata`` carries the
aggregation record and a compact summary of each proposal, so a panel that shrank is visible.
"""

import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, PrivateAttr

from moa_graph.answer_stream import RunFinished, astream_answer, stream_answer
from moa_graph.context import MoAContext
from moa_graph.errors import MoAConfigError, StructuredOutputError
from moa_graph.graph import build_moa_graph
from moa_graph.run_summary import RunSummary, summarize
from moa_graph.spec import ModelSpec
from moa_graph.structured import AnswerSchema


class ChatMoA(BaseChatModel):
    """Mixture-of-Agents as a LangChain chat model (Wang et al., arXiv 2406.04692).

    Each call runs the MoA graph on the messages: the proposers answer, the aggregator writes the
    reply. Use it wherever a chat model goes: ``invoke``/``ainvoke``/``stream``/``astream``/
    ``batch``, LCEL chains, or as a node's model. Streaming yields the aggregator's tokens, then
    one empty chunk with the usage and the records.

    Example::

        moa = ChatMoA(context=MoAContext.preset("vote", max_tokens=64))
        print(moa.invoke("What is 17 + 25?").content)

    Attributes:
        context: The run's settings (models as specs, rounds, mode, ...); None uses
            ``MoAContext()``, i.e. the ``MOA_*`` variables and the defaults.
        proposers: The proposers, as ``MoAContext.proposers`` takes them (model specs:
            ``"openai:gpt-4o-mini"``, a `moa_graph.ModelSpec` or its dict; they go into the
            context) or as chat model instances: one list (every layer) or one list per layer,
            as for `moa_graph.build_moa_graph`. One list is all specs or all instances.
        aggregator: The aggregator: a model spec (into the context) or a chat model instance.
        model_name: The name in ``response_metadata`` and traces (default ``"moa"``).

    The reply's ``usage_metadata`` sums the tokens every call reported (proposers and
    aggregator). Its ``response_metadata`` holds ``model_name``, ``aggregation`` (the
    `moa_graph.state.Aggregation` record), ``proposals`` (model, status, tokens and latency in
    seconds of each proposer call), ``proposals_asked`` and ``proposals_answered`` (of the last
    layer), and ``degraded``: True when fewer proposals than asked went into the answer.

    Raises:
        MoAConfigError: A run setting (``temperature``, ``max_tokens``, ...) given to
            ``ChatMoA`` instead of its ``context``, or specs and instances in one list.
        pydantic.ValidationError: An unknown argument.
        MoAConfigError: Bad settings, before any model is called (when the run starts).
        ProposerQuorumError, AggregatorError: The run failed; ``records`` keeps the proposals.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    context: MoAContext | None = None
    proposers: Sequence[BaseChatModel] | Sequence[Sequence[BaseChatModel]] | None = None
    aggregator: BaseChatModel | None = None
    model_name: str = "moa"
    _graph: CompiledStateGraph[Any, Any, Any, Any] = PrivateAttr()

    def __init__(self, **data: Any):
        _check_arguments(data, set(type(self).model_fields))
        super().__init__(**_specs_into_context(data))

    def model_post_init(self, context: Any, /) -> None:
        """Build the graph once: every call of this model runs it; declare what it can do."""
        if self.profile is None:
            # Tools through the aggregator; no native structured output, so create_agent's
            # response_format uses its tool strategy (which `bind_tools` serves).
            self.profile = ModelProfile(
                text_inputs=True, text_outputs=True, tool_calling=True, tool_choice=True,
                tool_call_streaming=True, structured_output=False,
            )  # fmt: skip
        self._graph = build_moa_graph(proposers=self.proposers, aggregator=self.aggregator).compile(
            name=self.model_name
        )

    @property
    def _llm_type(self) -> str:
        return "moa"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = _child_config(run_manager)
        out = self._graph.invoke({"messages": messages}, config, context=self._settings(**kwargs))
        return _result(out["messages"][-1], summarize(out), self.model_name, _schema_of(kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = _child_config(run_manager)
        out = await self._graph.ainvoke(
            {"messages": messages}, config, context=self._settings(**kwargs)
        )
        return _result(out["messages"][-1], summarize(out), self.model_name, _schema_of(kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for event in stream_answer(
            self._graph, {"messages": messages}, _child_config(run_manager),
            context=self._settings(**kwargs), answer_tool=_answer_tool(kwargs),
        ):  # fmt: skip
            if isinstance(event, AIMessageChunk):
                chunk = ChatGenerationChunk(message=event)
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            elif isinstance(event, RunFinished):
                yield _last_chunk(event.summary, self.model_name)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for event in astream_answer(
            self._graph, {"messages": messages}, _child_config(run_manager),
            context=self._settings(**kwargs), answer_tool=_answer_tool(kwargs),
        ):  # fmt: skip
            if isinstance(event, AIMessageChunk):
                chunk = ChatGenerationChunk(message=event)
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            elif isinstance(event, RunFinished):
                yield _last_chunk(event.summary, self.model_name)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Give the aggregator `tools`: its tool calls become the reply.

        The proposers answer in text, without the tools, and see earlier tool calls and their
        results as text (`moa_graph.tool_turns`); the aggregator gets the tools and the
        references. This is how the 2026 "fusion" gateways route tools through a panel.

        Args:
            tools: LangChain tools, functions, Pydantic models or OpenAI tool dicts.
            tool_choice: ``"auto"``, ``"none"``, ``"required"`` / ``"any"``, a tool's name, or
                an OpenAI tool-choice dict; passed to the aggregator. The run's context gets
                the tools through `moa_graph.MoAContext.with_tools` (``"required"`` with one
                tool becomes its name; in ``vote`` and ``select`` the proposers get the tools
                too).
            **kwargs: Bound too (e.g. ``ls_structured_output_format``), and ignored by the run.

        Returns:
            This model with the tools bound; `with_structured_output` uses it.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Return a runnable whose answer is `schema`'s object, made the aggregator mode's way.

        The schema is bound as the one tool, forced by name (LangChain's function-calling
        method; the embedded model then fills it under a grammar), and the answer's call is
        parsed and validated. Per ``aggregator_mode``:

        - ``synthesize`` / ``sequential``: the aggregator reads the text proposals and fills
          the schema.
        - ``vote``: every proposer fills the schema, and the most common object (arguments
          compared with sorted keys) is the answer, a draw going to the earliest; proposals
          that made no call do not count, and with none the aggregator fills it.
        - ``select``: every proposer fills the schema, the aggregator picks one; when its
          reply names none, or the chosen proposal made no call, the aggregator fills it.

        Args:
            schema: A Pydantic model, a TypedDict or a JSON Schema.
            include_raw: Return ``{"raw", "parsed", "parsing_error"}`` and never raise for a
                reply that does not fit (LangChain's contract).
            **kwargs: ``method`` and ``strict`` are accepted and ignored (function calling is
                the method every provider here supports, the embedded model included).

        Raises:
            StructuredOutputError: Without `include_raw`, when the reply does not fit the
                schema; it keeps the reply (``raw``) and the run's records (``records``).
        """
        kwargs.pop("method", None)
        kwargs.pop("strict", None)
        # The schema arrives as a forced tool through bind_tools: `_settings` gives it to the
        # run as every face does (`MoAContext.with_tools`).
        raw_and_parsed = BaseChatModel.with_structured_output(
            self, schema, include_raw=True, **kwargs
        )
        if include_raw:
            return raw_and_parsed
        return raw_and_parsed | RunnableLambda(_parsed_or_raise)

    def _settings(self, **kwargs: Any) -> MoAContext:
        """The run's settings, with what `bind_tools` bound: tools, and a ``response_format``.

        A bound ``response_format`` (what ``create_agent``'s provider strategy sends) makes the
        answer its object, as JSON text, or a call of a bound tool (`MoAContext.with_tools`).
        """
        settings = self.context if self.context is not None else MoAContext()
        schema = _schema_of(kwargs)
        tools = kwargs.get("tools") or []
        if tools or schema is not None:
            return settings.with_tools(
                tools, kwargs.get("tool_choice"),
                answer_tool=schema.tool() if schema is not None else None,
            )  # fmt: skip
        return settings


def _check_arguments(values: dict[str, Any], own: set[str]) -> None:
    """Refuse run settings as arguments: they go in ``context``.

    Raises:
        MoAConfigError: Naming what to write instead.
    """
    settings = ({f.name for f in dataclasses.fields(MoAContext)} & set(values)) - own
    if settings:
        names = ", ".join(sorted(settings))
        raise MoAConfigError(
            f"ChatMoA({names}=...): run settings go in the context: "
            f"ChatMoA(context=MoAContext({names}=...))"
        )


def _is_spec(value: Any) -> bool:
    return isinstance(value, str | dict | ModelSpec)


def _specs_into_context(values: dict[str, Any]) -> dict[str, Any]:
    """Move ``proposers``/``aggregator`` given as specs into the context, as MoAContext takes them.

    Raises:
        MoAConfigError: One list mixes specs and chat model instances.
    """
    values = dict(values)
    moved: dict[str, Any] = {}
    given = values.get("proposers")
    if isinstance(given, list | tuple) and given:
        layered = all(isinstance(layer, list | tuple) for layer in given)
        flat = [m for layer in given for m in layer] if layered else list(given)
        if all(_is_spec(m) for m in flat):
            if layered:
                moved |= {"layer_proposers": [list(layer) for layer in given], "rounds": len(given)}
            else:
                moved["proposers"] = list(given)
            del values["proposers"]
        elif any(_is_spec(m) for m in flat):
            raise MoAConfigError(
                "ChatMoA(proposers=...) mixes model specs and chat model instances: give all "
                "specs ('openai:gpt-4o-mini', ModelSpec) or all instances"
            )
    if _is_spec(values.get("aggregator")):
        moved["aggregator"] = values.pop("aggregator")
    if moved:
        values["context"] = dataclasses.replace(values.get("context") or MoAContext(), **moved)
    return values


def _parsed_or_raise(result: dict[str, Any]) -> Any:
    if result["parsing_error"] is None and result["parsed"] is not None:
        return result["parsed"]
    raw = result["raw"]
    reason = result["parsing_error"] or "the reply made no call of the schema's tool"
    records = {key: raw.response_metadata.get(key) for key in ("aggregation", "proposals")}
    raise StructuredOutputError(
        f"the answer does not fit the schema: {reason}", raw=raw, records=records
    )


def _child_config(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
) -> RunnableConfig:
    """The graph runs as a child of this model's run, so traces nest under it.

    A model's run manager has no ``get_child``; this builds the same child manager a chain's
    would (langchain-core ``ParentRunManager.get_child``).
    """
    if run_manager is None:
        return RunnableConfig()
    manager: CallbackManager | AsyncCallbackManager = (
        AsyncCallbackManager(handlers=[], parent_run_id=run_manager.run_id)
        if isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        else CallbackManager(handlers=[], parent_run_id=run_manager.run_id)
    )
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return RunnableConfig(callbacks=manager)


def _result(
    answer: BaseMessage, summary: RunSummary, model_name: str, schema: AnswerSchema | None
) -> ChatResult:
    calls = getattr(answer, "tool_calls", [])
    content = answer.content
    if schema is not None and (own := [c for c in calls if c["name"] == schema.name]):
        content, calls = json.dumps(schema.parse(own[0]["args"])), []  # the object, as OpenAI's
    message = AIMessage(
        content=content,
        id=answer.id,
        tool_calls=calls,
        usage_metadata=cast(UsageMetadata, dict(summary["usage"])),
        response_metadata=response_metadata(summary, model_name),
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


def _schema_of(kwargs: dict[str, Any]) -> AnswerSchema | None:
    """The schema a bound ``response_format`` names (OpenAI's shape, or a Pydantic model).

    Raises:
        MoAConfigError: A ``response_format`` this model cannot honour.
    """
    given = kwargs.get("response_format")
    if given is None:
        return None
    if isinstance(given, type) and issubclass(given, BaseModel):
        return AnswerSchema.of(given)
    kind = given.get("type") if isinstance(given, dict) else None
    if kind == "json_object":
        return AnswerSchema("json_object", {"type": "object"})
    if kind == "json_schema" and isinstance(spec := given.get("json_schema"), dict):
        schema = AnswerSchema.of(spec.get("schema", {"type": "object"}))
        return dataclasses.replace(schema, name=str(spec.get("name") or schema.name))
    raise MoAConfigError(
        f"response_format={given!r}: give a Pydantic model or {{'type': 'json_schema', "
        "'json_schema': {'name': ..., 'schema': {...}}}"
    )


def _answer_tool(kwargs: dict[str, Any]) -> str | None:
    schema = _schema_of(kwargs)
    return schema.name if schema is not None else None


def _last_chunk(summary: RunSummary, model_name: str) -> ChatGenerationChunk:
    chunk = AIMessageChunk(
        content="",
        usage_metadata=cast(UsageMetadata, dict(summary["usage"])),
        response_metadata=response_metadata(summary, model_name),
        chunk_position="last",
    )
    return ChatGenerationChunk(message=chunk)


def response_metadata(summary: RunSummary, model_name: str) -> dict[str, Any]:
    """Return what a `ChatMoA` reply says about its run (`moa_graph.run_summary.summarize`).

    Args:
        summary: The run's summary.
        model_name: The model's name.

    Returns:
        ``model_name``, ``aggregation``, ``proposals`` (model, layer, status, tokens, latency in
        seconds), ``proposals_asked`` and ``proposals_answered`` of the layer the answer was
        made from, ``degraded``, ``calls`` and ``calls_without_usage``.
    """
    return {
        "model_name": model_name,
        "aggregation": summary["aggregation"],
        "proposals": summary["proposals"],
        "proposals_asked": summary["proposals_asked"],
        "proposals_answered": summary["proposals_answered"],
        "degraded": summary["degraded"],
        "calls": summary["calls"],
        "calls_without_usage": summary["calls_without_usage"],
    }
