"""The Mixture-of-Agents graph: a fan-out node per proposer, a join per layer.

``build_moa_graph`` wires plain nodes into a LangGraph ``StateGraph``::

    START -> layer1/<model> ... -> layer1/join -> layer2/<model> ... -> layer2/join
          -> aggregator -> END

Proposers of a layer run concurrently; LangGraph starts a join only when every
proposer of its layer has written its call record, so the next layer sees all
of them. A failed proposer writes a record with its error instead of raising,
and the join decides whether enough of the layer succeeded.
"""

from __future__ import annotations

import logging
import operator
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired, cast

from langchain_core.callbacks import dispatch_custom_event
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    AnyMessage,
    BaseMessage,
    BaseMessageChunk,
    message_chunk_to_message,
)
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.config import get_stream_writer
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer
from typing_extensions import TypedDict  # pydantic (Studio schemas) needs it on 3.11

from langchain_moa.accounting import ModelCall, describe_error
from langchain_moa.models import ModelSpec, model_label, node_slug, resolve_model
from langchain_moa.prompts import (
    AGGREGATE_AND_SYNTHESIZE_PROMPT,
    RANK_PROMPT,
    inject_references,
    tool_turns_as_text,
)

logger = logging.getLogger(__name__)

AGGREGATOR_NODE = "aggregator"
"""Name of the final node."""

STREAM_ANSWER = "moa_stream_answer"
"""``configurable`` key: when true, the aggregator streams its answer as
custom stream events (``{"event": ANSWER_CHUNK, "chunk": AIMessageChunk}``)."""

ANSWER_CHUNK = "moa_answer_chunk"
"""``event`` value of a custom stream event that carries an answer token."""


Start = tuple[int, float, float]
"""A call's turn, wall-clock start and monotonic start."""

Aggregation = Literal["synthesize", "rank"]
"""How the last layer becomes the answer: MoA's synthesis or the LLM-ranker."""


class MoAState(TypedDict):
    """State of a MoA conversation (one run per user turn)."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation every model sees (input); the answer is appended."""
    aggregator_kwargs: NotRequired[dict[str, Any]]
    """Call options for the aggregator only, e.g. ``stop`` (input)."""
    tools: NotRequired[list[dict[str, Any]]]
    """Tools (OpenAI format) bound to the aggregator; proposers read them as text."""
    tool_choice: NotRequired[Any]
    """The aggregator's ``tool_choice``, with ``tools``."""
    calls: Annotated[list[ModelCall], operator.add]
    """Every model call, in completion order, of every run on this state."""
    references: NotRequired[list[str]]
    """The last joined layer's successful response texts, in proposer order."""
    answer: NotRequired[AIMessage]
    """The aggregator's message (output)."""


class LayerFailedError(RuntimeError):
    """Too few proposers of a layer succeeded to go on."""


CALL_START = "moa_call_start"
"""Custom event: a model call begins (``node``, ``layer``, ``model``)."""
CALL_END = "moa_call_end"
"""Custom event: a model call finished; the data is its `ModelCall` record."""
CALL_ERROR = "moa_call_error"
"""Custom event: a proposer failed; the data is its record, ``error`` set."""


def turn(state: MoAState) -> int:
    """Which run of the conversation this is: the length of the conversation it answers.

    A thread (LangGraph Studio, a checkpointer) keeps ``calls`` across runs;
    the turn tells this run's calls apart.
    """
    return len(state["messages"])


def _streaming(config: RunnableConfig) -> bool:
    """Whether the caller asked for the answer as custom stream events."""
    return bool(config.get("configurable", {}).get(STREAM_ANSWER))


def _emit(config: RunnableConfig, event: str, data: Mapping[str, Any]) -> None:
    """Tell a UI how the layers fill in.

    Sent twice: as a LangGraph custom stream event, and as a LangChain custom
    event (which ``astream_events`` and tracers see).
    """
    get_stream_writer()({"event": event, **data})
    dispatch_custom_event(event, dict(data), config=config)


@dataclass(frozen=True)
class _ModelNode:
    """What a proposer node and the aggregator node share."""

    layer: int
    index: int
    name: str
    model: BaseChatModel
    prompt: str

    def conversation(self, state: MoAState) -> list[BaseMessage]:
        return list(state["messages"])

    def inputs(self, state: MoAState) -> list[BaseMessage]:
        # Layer 1 sees the conversation alone; later layers the last join's refs.
        references = state.get("references", []) if self.layer > 1 else []
        return inject_references(self.conversation(state), references, self.prompt)

    def config(self, config: RunnableConfig) -> RunnableConfig:
        # The run name makes a trace read like the graph.
        return {**config, "run_name": self.name}

    def started(self, state: MoAState, config: RunnableConfig) -> Start:
        """Announce the call; return its turn, wall-clock and monotonic start."""
        _emit(
            config,
            CALL_START,
            {"node": self.name, "layer": self.layer, "model": model_label(self.model)},
        )
        return turn(state), time.time(), time.perf_counter()

    def record(
        self,
        turn: int,
        started_at: float,
        t0: float,
        *,
        message: BaseMessage | None = None,
        error: BaseException | None = None,
    ) -> ModelCall:
        return ModelCall(
            turn=turn,
            layer=self.layer,
            index=self.index,
            node=self.name,
            model=model_label(self.model),
            text=None if message is None else message.text,
            usage=getattr(message, "usage_metadata", None),
            started_at=started_at,
            latency_s=time.perf_counter() - t0,
            error=None if error is None else describe_error(error),
        )


class _Proposer(_ModelNode):
    """Answers once; a failure becomes a record, not an exception.

    Proposers are tagged ``nostream``: an outer graph streaming messages shows
    the answer, not the drafts.
    """

    def conversation(self, state: MoAState) -> list[BaseMessage]:
        # Proposers propose in text: tools and tool turns reach them as text.
        return tool_turns_as_text(state["messages"], state.get("tools", []))

    def config(self, config: RunnableConfig) -> RunnableConfig:
        return {**super().config(config), "tags": [*config.get("tags", []), TAG_NOSTREAM]}

    def done(
        self,
        config: RunnableConfig,
        start: Start,
        message: BaseMessage | None,
        error: Exception | None,
    ) -> dict:
        if error is None and message is not None and not message.text.strip():
            error = ValueError("empty response")
        if error is not None:
            logger.warning("%s failed: %s", self.name, describe_error(error))
            message = None
        call = self.record(*start, message=message, error=error)
        _emit(config, CALL_ERROR if error else CALL_END, call)
        return {"calls": [call]}

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        start = self.started(state, config)
        message, error = None, None
        try:
            message = self.model.invoke(self.inputs(state), self.config(config))
        except Exception as caught:  # noqa: BLE001 - recorded; the join decides
            error = caught
        return self.done(config, start, message, error)

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        start = self.started(state, config)
        message, error = None, None
        try:
            message = await self.model.ainvoke(self.inputs(state), self.config(config))
        except Exception as caught:  # noqa: BLE001 - recorded; the join decides
            error = caught
        return self.done(config, start, message, error)


def _answer(answer: AIMessage, call: ModelCall) -> dict:
    """The final node's update: its call, the answer, and the answer in the chat."""
    return {"calls": [call], "answer": answer, "messages": [answer]}


class _Aggregator(_ModelNode):
    """Writes the answer; its failure is the run's failure (no silent fallback).

    With ``tools`` in the state they are bound to its model, so the answer may
    be tool calls.
    """

    def model_for(self, state: MoAState) -> Runnable[LanguageModelInput, BaseMessage]:
        if not state.get("tools"):
            return self.model
        return self.model.bind_tools(state["tools"], tool_choice=state.get("tool_choice"))

    def done(self, config: RunnableConfig, start: Start, message: BaseMessage) -> dict:
        answer = message_chunk_to_message(message)
        if not isinstance(answer, AIMessage):
            msg = f"{self.name}: expected an AIMessage, got {type(answer).__name__}"
            raise TypeError(msg)
        call = self.record(*start, message=answer)
        _emit(config, CALL_END, call)
        return _answer(answer, call)

    @staticmethod
    def emit(answer: BaseMessageChunk | None, chunk: BaseMessageChunk) -> BaseMessageChunk:
        """Send one chunk to the stream; return the answer so far."""
        get_stream_writer()({"event": ANSWER_CHUNK, "chunk": chunk})
        return chunk if answer is None else answer + chunk

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        start = self.started(state, config)
        model, inputs = self.model_for(state), self.inputs(state)
        kwargs = state.get("aggregator_kwargs", {})
        if not _streaming(config):
            return self.done(config, start, model.invoke(inputs, self.config(config), **kwargs))
        answer = None
        for chunk in model.stream(inputs, self.config(config), **kwargs):
            answer = self.emit(answer, cast("BaseMessageChunk", chunk))
        return self.done(config, start, _require(answer, self.name))

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        start = self.started(state, config)
        model, inputs = self.model_for(state), self.inputs(state)
        kwargs = state.get("aggregator_kwargs", {})
        if not _streaming(config):
            message = await model.ainvoke(inputs, self.config(config), **kwargs)
            return self.done(config, start, message)
        answer = None
        async for chunk in model.astream(inputs, self.config(config), **kwargs):
            answer = self.emit(answer, cast("BaseMessageChunk", chunk))
        return self.done(config, start, _require(answer, self.name))


def _require(message: BaseMessageChunk | None, node: str) -> BaseMessageChunk:
    if message is None:
        msg = f"{node}: the model streamed nothing"
        raise RuntimeError(msg)
    return message


class _Ranker(_ModelNode):
    """The LLM-ranker baseline: the aggregator picks a reference by number.

    Its answer is the chosen reference verbatim. A reply with no valid number
    takes reference 1, and the ranker's call record says so in ``error``.
    """

    def pick(
        self,
        state: MoAState,
        config: RunnableConfig,
        start: tuple[int, float, float],
        reply: BaseMessage,
    ) -> dict:
        references = state.get("references", [])
        choice = parse_choice(reply.text, len(references))
        call = self.record(*start, message=reply)
        if choice is None:
            choice = 1
            call["error"] = (
                f"ValueError: no response number 1-{len(references)} in the reply; took 1"
            )
        answer = AIMessage(content=references[choice - 1], response_metadata={"choice": choice})
        if _streaming(config):
            # The chosen text exists whole: one chunk, nothing split up.
            get_stream_writer()(
                {"event": ANSWER_CHUNK, "chunk": AIMessageChunk(content=answer.content)}
            )
        _emit(config, CALL_END, call)
        return _answer(answer, call)

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        start = self.started(state, config)
        reply = self.model.invoke(self.inputs(state), self.config(config))
        return self.pick(state, config, start, reply)

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        start = self.started(state, config)
        reply = await self.model.ainvoke(self.inputs(state), self.config(config))
        return self.pick(state, config, start, reply)


def parse_choice(reply: str, count: int) -> int | None:
    """The first number in ``reply`` that names one of ``count`` responses."""
    for number in re.findall(r"\d+", reply):
        if 1 <= int(number) <= count:
            return int(number)
    return None


@dataclass(frozen=True)
class _Join:
    """Waits for a layer, checks enough succeeded, passes their texts on."""

    layer: int
    min_proposers: int

    def __call__(self, state: MoAState) -> dict:
        # Only this run's calls: a thread keeps earlier runs' calls too.
        now = turn(state)
        calls = sorted(
            (c for c in state["calls"] if c["layer"] == self.layer and c["turn"] == now),
            key=lambda c: c["index"],
        )
        ok = [c for c in calls if c["error"] is None]
        if len(ok) < self.min_proposers:
            failures = "; ".join(f"{c['node']}: {c['error']}" for c in calls if c["error"])
            msg = (
                f"layer {self.layer}: {len(ok)} of {len(calls)} proposers succeeded, "
                f"min_proposers is {self.min_proposers}. Failures: {failures}"
            )
            raise LayerFailedError(msg)
        return {"references": [c["text"] for c in ok]}


def _node_names(layer: int, models: Sequence[BaseChatModel]) -> list[str]:
    """``layer{n}/{model}``, numbered where a model repeats in the layer."""
    slugs = [node_slug(model_label(m)) for m in models]
    names = []
    for index, slug in enumerate(slugs):
        repeated = slugs.count(slug) > 1 or slug == "join"
        suffix = f"-{slugs[:index].count(slug) + 1}" if repeated else ""
        names.append(f"layer{layer}/{slug}{suffix}")
    return names


def resolve_stack(
    layers: Sequence[Sequence[ModelSpec]], aggregator: ModelSpec | None, min_proposers: int = 1
) -> tuple[list[list[BaseChatModel]], BaseChatModel]:
    """Check a MoA configuration and resolve every model in it.

    Raises:
        ValueError: naming what is wrong: no layers, an empty layer, a
            ``min_proposers`` no layer can meet, or a model that is not one.
    """
    if isinstance(layers, str | BaseChatModel) or not isinstance(layers, Sequence):
        msg = f"layers must be a list of proposer lists, got {type(layers).__name__}"
        raise ValueError(msg)  # noqa: TRY004 - a configuration error, as all others here
    if not layers:
        msg = "no proposer layers: give at least one layer of proposers"
        raise ValueError(msg)
    resolved = []
    for number, layer in enumerate(layers, start=1):
        if isinstance(layer, str | BaseChatModel) or not isinstance(layer, Sequence):
            msg = f"layer {number} must be a list of models, got {type(layer).__name__}"
            raise ValueError(msg)  # noqa: TRY004
        if not layer:
            msg = f"layer {number} is empty: every layer needs at least one proposer"
            raise ValueError(msg)
        resolved.append(
            [resolve_model(m, f"layer {number}, model {i + 1}") for i, m in enumerate(layer)]
        )
    if aggregator is None:
        msg = "no aggregator: give the model that writes the final answer"
        raise ValueError(msg)
    smallest = min(len(layer) for layer in resolved)
    if not 1 <= min_proposers <= smallest:
        msg = (
            f"min_proposers must be between 1 and the smallest layer's size "
            f"({smallest}), got {min_proposers}"
        )
        raise ValueError(msg)
    return resolved, resolve_model(aggregator, "aggregator")


def build_moa_graph(
    layers: Sequence[Sequence[ModelSpec]],
    aggregator: ModelSpec,
    *,
    prompt: str | None = None,
    min_proposers: int = 1,
    aggregation: Aggregation = "synthesize",
    checkpointer: Checkpointer = None,
    name: str = "moa",
) -> CompiledStateGraph:
    """Build the Mixture-of-Agents graph.

    Args:
        layers: The proposer layers, each a list of chat models or
            ``"provider:model"`` strings; a model may repeat.
        aggregator: The model that writes the final answer.
        prompt: Put before the numbered references in the system message of
            every layer after the first and of the aggregator; the paper's
            aggregate-and-synthesize prompt by default.
        min_proposers: How many proposers of each layer must succeed.
        aggregation: ``"synthesize"`` (MoA) or ``"rank"`` (the paper's
            LLM-ranker baseline: the aggregator picks one of the last layer's
            responses by number, with ``RANK_PROMPT`` unless ``prompt`` is
            given, and that response is the answer).
        checkpointer: Passed to ``compile``; ``False`` keeps the graph from
            using a parent graph's checkpointer.
        name: The compiled graph's name.

    Returns:
        The compiled graph. Input ``{"messages": [...]}``; output adds
        ``calls`` (every model call's record) and ``answer``.

    Raises:
        ValueError: The configuration is invalid (see ``resolve_stack``).
    """
    proposer_layers, aggregator_model = resolve_stack(layers, aggregator, min_proposers)
    builder = StateGraph(MoAState)
    previous = START
    for number, models in enumerate(proposer_layers, start=1):
        names = _node_names(number, models)
        join = f"layer{number}/join"
        for index, (node_name, model) in enumerate(zip(names, models, strict=True)):
            proposer = _Proposer(
                number, index, node_name, model, prompt or AGGREGATE_AND_SYNTHESIZE_PROMPT
            )
            builder.add_node(
                node_name, RunnableLambda(proposer, afunc=proposer.acall, name=node_name)
            )
            builder.add_edge(previous, node_name)
        builder.add_node(join, _Join(number, min_proposers))
        builder.add_edge(names, join)
        previous = join
    if aggregation not in {"synthesize", "rank"}:
        msg = f"aggregation must be 'synthesize' or 'rank', got {aggregation!r}"
        raise ValueError(msg)
    final_class = _Ranker if aggregation == "rank" else _Aggregator
    final_prompt = RANK_PROMPT if aggregation == "rank" and prompt is None else prompt
    final = final_class(
        len(proposer_layers) + 1, 0, AGGREGATOR_NODE, aggregator_model,
        final_prompt or AGGREGATE_AND_SYNTHESIZE_PROMPT,
    )  # fmt: skip
    builder.add_node(
        AGGREGATOR_NODE, RunnableLambda(final, afunc=final.acall, name=AGGREGATOR_NODE)
    )
    builder.add_edge(previous, AGGREGATOR_NODE)
    builder.add_edge(AGGREGATOR_NODE, END)
    return builder.compile(checkpointer=checkpointer, name=name)
