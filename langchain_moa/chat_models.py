"""ChatMoA: a whole Mixture-of-Agents stack behind the chat-model interface."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import suppress
from contextvars import ContextVar
from functools import cache, partial
from pathlib import Path
from typing import Any, Self, cast
from uuid import UUID, uuid4

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.runnables.config import set_config_context
from langchain_core.tools import BaseTool
from langchain_core.tracers import BaseTracer
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph.state import CompiledStateGraph
from pydantic import PrivateAttr, SkipValidation, model_validator

from langchain_moa.accounting import by_layer, total_usage
from langchain_moa.graph import (
    ANSWER_CHUNK,
    STREAM_ANSWER,
    Aggregation,
    MoAState,
    build_moa_graph,
    resolve_stack,
)
from langchain_moa.local import (
    DEFAULT_LAYERS,
    DEFAULT_MAX_TOKENS,
    DEFAULT_PROPOSERS,
    DEFAULT_TEMPERATURE,
    LlamaServer,
    local_stack,
    shared_server,
)
from langchain_moa.models import ModelSpec, model_label

PAPER_LAYERS = 3
"""The paper's MoA: two proposer layers and the aggregator."""


@cache
def _model_runs_hidden(cls: type) -> type:
    """``cls`` with model-run events ignored (LangChain checks these properties)."""
    hidden = property(lambda _: True)
    return type(
        f"{cls.__name__}ForMoA", (cls,), {"ignore_llm": hidden, "ignore_chat_model": hidden}
    )


def _for_inner_runs(handler: BaseCallbackHandler) -> BaseCallbackHandler:
    """How a caller's handler takes part in the graph's runs.

    Tracers see every run, so a trace nests like the graph. Other handlers see
    one model run, ChatMoA's own (whose usage is the total), and the graph's
    chain and custom events: a token counter must not count twice, and an
    outer graph streaming messages must not show the proposers' drafts.
    """
    if isinstance(handler, BaseTracer):
        return handler
    handler_class: type = type(handler)
    try:
        view: BaseCallbackHandler = object.__new__(_model_runs_hidden(handler_class))
        view.__dict__ = handler.__dict__  # the same handler state, seen through the view
    except (TypeError, AttributeError):  # __slots__ or built-in handlers: pass on as they are
        return handler
    return view


def _child_callbacks(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun,
) -> BaseCallbackManager:
    """Callbacks that nest the graph's runs under this chat-model run.

    LLM run managers have no ``get_child``: chat models rarely have children.
    """
    manager_class = (
        AsyncCallbackManager
        if isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        else CallbackManager
    )
    manager = manager_class(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers([_for_inner_runs(h) for h in run_manager.inheritable_handlers])
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager


# langchain-core creates a stream's run but does not hand its manager to
# _stream/_astream; ChatMoA.stream/astream name the run themselves and leave
# (model, config, run id) here, so the graph's runs nest under it.
_streaming_run: ContextVar[tuple[int, RunnableConfig, UUID] | None] = ContextVar(
    "moa_streaming_run", default=None
)


def _stream_callbacks(model: BaseChatModel, *, is_async: bool) -> BaseCallbackManager | None:
    """Callbacks nesting under the stream run ``model.stream`` opened, if any."""
    current = _streaming_run.get()
    if current is None or current[0] != id(model):
        return None
    _, config, run_id = current
    manager_class = AsyncCallbackManager if is_async else CallbackManager
    manager = manager_class.configure(
        inheritable_callbacks=config.get("callbacks"),
        inheritable_tags=config.get("tags"),
        inheritable_metadata=config.get("metadata"),
    )
    manager.set_handlers([_for_inner_runs(h) for h in manager.handlers])
    manager.parent_run_id = run_id
    return manager


def _identity(model: BaseChatModel) -> dict[str, Any]:
    """What tells one configured model from another (LangChain's cache key parts)."""
    return {"_type": model._llm_type, **model._identifying_params}  # noqa: SLF001


class ChatMoA(BaseChatModel):
    """Mixture-of-Agents (Wang et al., 2024) as a LangChain chat model.

    Proposer models answer, later layers answer again with the previous
    layer's answers in their system message, and an aggregator writes the
    final answer. Configure it as the paper does::

        ChatMoA(proposers=[m1, m2, m3], aggregator=m1, layers=3)

    or layer by layer::

        ChatMoA(layers=[[m1, m2, m3], [m1, m2]], aggregator=m1)

    With no models at all it runs offline on the embedded SmolLM2-135M-Instruct
    (see ``langchain_moa.local``): 3 proposers and 2 layers.

    ``usage_metadata`` of the answer sums every call; ``response_metadata``
    holds ``model_name``, ``layers`` (each layer's call records: node, model,
    text, usage, latency, error; the aggregator's layer last) and
    ``latency_s``.
    """

    proposers: SkipValidation[Sequence[ModelSpec] | None] = None
    """Proposers of every proposer layer (the paper's set-up). Chat models or
    ``"provider:model"`` strings; repeat one for the single-proposer setting."""

    layers: SkipValidation[int | Sequence[Sequence[ModelSpec]] | None] = None
    """With ``proposers``: the number of layers counting the aggregator's
    (2 = MoA-Lite, default 3 = MoA). Without: the proposers of each layer."""

    aggregator: SkipValidation[ModelSpec | None] = None
    """The model that writes the final answer."""

    prompt: str | None = None
    """Put before the numbered references; None means the paper's
    aggregate-and-synthesize prompt (``RANK_PROMPT`` for the ranker)."""

    aggregation: Aggregation = "synthesize"
    """``"synthesize"`` (MoA) or ``"rank"``: the paper's LLM-ranker baseline,
    where the aggregator picks one of the last layer's responses by number."""

    min_proposers: int = 1
    """How many proposers of each layer must succeed for the run to go on."""

    model_name: str | None = None
    """Reported as ``response_metadata["model_name"]``; derived if not given."""

    _graph: CompiledStateGraph = PrivateAttr()
    _models: dict[str, Any] = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> Self:
        layers, aggregator = self._stack()
        models, aggregator_model = resolve_stack(layers, aggregator, self.min_proposers)
        if self.model_name is None:
            self.model_name = f"moa-{len(models) + 1}l:{model_label(aggregator_model)}"
        self._models = {
            "layers": [[_identity(m) for m in layer] for layer in models],
            "aggregator": _identity(aggregator_model),
        }
        # checkpointer=False: inside an outer graph, the run stays our own.
        self._graph = build_moa_graph(
            models,
            aggregator_model,
            prompt=self.prompt,
            min_proposers=self.min_proposers,
            aggregation=self.aggregation,
            checkpointer=False,
        )
        return self

    def _stack(self) -> tuple[Sequence[Sequence[ModelSpec]], ModelSpec | None]:
        """The proposer layers and aggregator that the fields describe."""
        if self.layers is not None and not isinstance(self.layers, int):
            if self.proposers is not None:
                msg = "give either proposers (with layers as a count) or per-layer layers, not both"
                raise ValueError(msg)
            return self.layers, self.aggregator
        if self.layers is not None and self.layers < 2:  # noqa: PLR2004 - proposers + aggregator
            msg = f"layers counts the aggregator's layer and must be at least 2, got {self.layers}"
            raise ValueError(msg)
        if self.proposers is not None:
            if isinstance(self.proposers, str | BaseChatModel):
                msg = "proposers must be a list of models"
                raise ValueError(msg)
            count = self.layers or PAPER_LAYERS
            return [self.proposers] * (count - 1), self.aggregator
        if self.aggregator is not None:
            msg = "an aggregator was given without proposers: give proposers or layers"
            raise ValueError(msg)
        return local_stack(layers=self.layers or DEFAULT_LAYERS)

    @classmethod
    def local(
        cls,
        *,
        layers: int = DEFAULT_LAYERS,
        proposers: int = DEFAULT_PROPOSERS,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        model_path: str | Path | None = None,
        server: LlamaServer | None = None,
        **kwargs: Any,
    ) -> Self:
        """A MoA stack on the embedded model (or another GGUF), offline.

        Args:
            layers: Layers counting the aggregator's.
            proposers: Proposers per layer, each sampling with its own seed.
            max_tokens: Longest answer of each call.
            temperature: Sampling temperature of every call.
            model_path: A GGUF file to serve instead of SmolLM2-135M-Instruct.
            server: A running ``LlamaServer`` to use instead of the shared one.
            **kwargs: Other ``ChatMoA`` fields (``prompt``, ``min_proposers``...).
        """
        stack, aggregator = local_stack(
            layers=layers,
            proposers=proposers,
            max_tokens=max_tokens,
            temperature=temperature,
            server=server or shared_server(model_path),
        )
        return cls(layers=stack, aggregator=aggregator, **kwargs)

    @classmethod
    def from_config(cls, path: str | Path) -> ChatMoA:
        """The stack a YAML or TOML file describes (see ``langchain_moa.config``)."""
        # Imported here: config builds ChatMoA, so it imports this module.
        from langchain_moa.config import chat_moa_from_config  # noqa: PLC0415

        return chat_moa_from_config(path)

    @property
    def graph(self) -> CompiledStateGraph:
        """The compiled MoA graph (built once, when the model is created)."""
        return self._graph

    @property
    def _llm_type(self) -> str:
        return "moa"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # Every model's own parameters: two stacks must not share a cache entry.
        return {
            "model_name": self.model_name,
            "min_proposers": self.min_proposers,
            "prompt": self.prompt,
            "aggregation": self.aggregation,
            **self._models,
        }

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Give the aggregator tools; proposers read them, and tool turns, as text.

        The aggregator's answer may then be tool calls (with ``tool_choice``
        as its model takes it), so ``ChatMoA`` works in agents and with
        ``with_structured_output``. Proposers propose in text.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice in {"any", "required"} and len(formatted) == 1:
            # One tool that must be called is that tool; the named form is also
            # understood by servers without "required" (llama.cpp, older vLLM).
            name = formatted[0]["function"]["name"]
            tool_choice = {"type": "function", "function": {"name": name}}
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _input(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> MoAState:
        tools = kwargs.pop("tools", None) or []
        tool_choice = kwargs.pop("tool_choice", None)
        # Tracing metadata from with_structured_output; not a model option.
        kwargs.pop("ls_structured_output_format", None)
        aggregator_kwargs = {**kwargs, **({"stop": stop} if stop else {})}
        # Copies: add_messages gives messages ids, and the caller's stay as they are.
        conversation = cast("list[AnyMessage]", [m.model_copy() for m in messages])
        return MoAState(
            messages=conversation,
            calls=[],
            aggregator_kwargs=aggregator_kwargs,
            tools=tools,
            tool_choice=tool_choice,
        )

    def stream(
        self,
        input: LanguageModelInput,  # noqa: A002 - the Runnable interface names it
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Stream the aggregator's tokens; the graph's runs nest under this run."""
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid4()
        token = _streaming_run.set((id(self), config, run_id))
        try:
            yield from super().stream(input, {**config, "run_id": run_id}, stop=stop, **kwargs)
        finally:
            with suppress(ValueError):  # a generator closed from another context
                _streaming_run.reset(token)

    async def astream(
        self,
        input: LanguageModelInput,  # noqa: A002 - the Runnable interface names it
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """Stream the aggregator's tokens; the graph's runs nest under this run."""
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid4()
        token = _streaming_run.set((id(self), config, run_id))
        try:
            async for chunk in super().astream(
                input, {**config, "run_id": run_id}, stop=stop, **kwargs
            ):
                yield chunk
        finally:
            with suppress(ValueError):  # a generator closed from another context
                _streaming_run.reset(token)

    def _config(
        self,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        *,
        stream: bool,
        is_async: bool,
    ) -> RunnableConfig:
        callbacks: BaseCallbackManager | None
        if run_manager is not None:
            callbacks = _child_callbacks(run_manager)
        else:
            callbacks = _stream_callbacks(self, is_async=is_async)
        return {
            "callbacks": callbacks,
            "configurable": {STREAM_ANSWER: stream},
            # An outer graph streaming messages sees ChatMoA's tokens, not its
            # models' (which ChatMoA passes on itself, the aggregator's).
            "tags": [TAG_NOSTREAM],
        }

    def _metadata(self, state: dict[str, Any], started: float) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "layers": by_layer(state["calls"]),
            "latency_s": time.perf_counter() - started,
        }

    def _result(self, state: dict[str, Any], started: float) -> ChatResult:
        answer: AIMessage = state["answer"]
        message = AIMessage(
            content=answer.content,
            tool_calls=answer.tool_calls,
            invalid_tool_calls=answer.invalid_tool_calls,
            usage_metadata=total_usage(state["calls"]),
            response_metadata=self._metadata(state, started),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _last_chunk(self, state: dict[str, Any], started: float) -> ChatGenerationChunk:
        # Usage and metadata travel once, at the end: chunk merging would add
        # up or concatenate them if every chunk carried them.
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=total_usage(state["calls"]),
                response_metadata=self._metadata(state, started),
                chunk_position="last",
            )
        )

    @staticmethod
    def _answer_chunk(part: Any) -> ChatGenerationChunk | None:
        if not (isinstance(part, dict) and part.get("event") == ANSWER_CHUNK):
            return None
        chunk: AIMessageChunk = part["chunk"]
        if not chunk.content and not chunk.tool_call_chunks:
            return None
        # The aggregator's own usage and metadata are counted in the last chunk.
        return ChatGenerationChunk(
            message=AIMessageChunk(content=chunk.content, tool_call_chunks=chunk.tool_call_chunks)
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.perf_counter()
        config = self._config(run_manager, stream=False, is_async=False)
        # Our config, not a surrounding chain's or graph's, is the graph's context.
        with set_config_context(config) as context:
            state = context.run(self._graph.invoke, self._input(messages, stop, **kwargs), config)
        return self._result(state, started)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.perf_counter()
        config = self._config(run_manager, stream=False, is_async=True)
        with set_config_context(config) as context:
            run = self._graph.ainvoke(self._input(messages, stop, **kwargs), config)
            state = await asyncio.create_task(run, context=context)
        return self._result(state, started)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        started, state = time.perf_counter(), cast("dict[str, Any]", {})
        config = self._config(run_manager, stream=True, is_async=False)
        with set_config_context(config) as context:
            graph_input = self._input(messages, stop, **kwargs)
            parts = self._graph.stream(graph_input, config, stream_mode=["custom", "values"])
            steps = iter(partial(context.run, next, parts, None), None)
            for mode, part in steps:
                if mode == "values":
                    state = cast("dict[str, Any]", part)
                elif chunk := self._answer_chunk(part):
                    if run_manager:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
        yield self._last_chunk(state, started)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        started, state = time.perf_counter(), cast("dict[str, Any]", {})
        config = self._config(run_manager, stream=True, is_async=True)
        with set_config_context(config) as context:
            graph_input = self._input(messages, stop, **kwargs)
            parts = self._graph.astream(graph_input, config, stream_mode=["custom", "values"])
            while step := await asyncio.create_task(anext(parts, None), context=context):
                mode, part = step
                if mode == "values":
                    state = cast("dict[str, Any]", part)
                elif chunk := self._answer_chunk(part):
                    if run_manager:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
        yield self._last_chunk(state, started)
