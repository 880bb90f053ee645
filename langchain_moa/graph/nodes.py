"""The graph's nodes: a proposer per model, a join per layer, the aggregator.

A failed proposer writes a record with its error instead of raising, and the
join decides whether enough of the layer succeeded. The aggregator's failure
is the run's failure: nothing falls back silently.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.callbacks import dispatch_custom_event
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    message_chunk_to_message,
)
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_stream_writer

from langchain_moa.accounting import ModelCall, describe_error
from langchain_moa.graph.prompts import Prompt, render_prompt, tool_turns_as_text
from langchain_moa.graph.state import (
    AGGREGATOR_KWARGS,
    ANSWER_CHUNK,
    CALL_END,
    CALL_ERROR,
    CALL_START,
    STREAM_ANSWER,
    MoAState,
    turn,
)
from langchain_moa.stacks.factory import model_label

logger = logging.getLogger(__name__)

Start = tuple[int, float, float]
"""A call's turn, wall-clock start and monotonic start."""


class LayerFailedError(RuntimeError):
    """Too few proposers of a layer succeeded to go on."""


def _configurable(config: RunnableConfig) -> Mapping[str, Any]:
    return config.get("configurable") or {}


def _streaming(config: RunnableConfig) -> bool:
    """Whether the caller asked for the answer as custom stream events."""
    return bool(_configurable(config).get(STREAM_ANSWER))


def _emit(config: RunnableConfig, event: str, data: Mapping[str, Any]) -> None:
    """Tell a UI how the layers fill in.

    Sent twice: as a LangGraph custom stream event, and as a LangChain custom
    event (which ``astream_events`` and callback handlers see).
    """
    get_stream_writer()({"event": event, **data})
    dispatch_custom_event(event, dict(data), config=config)


@dataclass(frozen=True)
class ModelNode:
    """What a proposer node and the aggregator node share."""

    layer: int
    index: int
    name: str
    model: BaseChatModel
    prompt: Prompt

    def conversation(self, state: MoAState) -> list[BaseMessage]:
        """The conversation this node's model answers."""
        return list(state["messages"])

    def inputs(self, state: MoAState) -> list[BaseMessage]:
        """The messages sent: the conversation, with the references from layer 2 on."""
        # Layer 1 sees the conversation alone; later layers the last join's refs.
        references = state.get("references", []) if self.layer > 1 else []
        return render_prompt(self.prompt, self.conversation(state), references, self.layer)

    def config(self, config: RunnableConfig) -> RunnableConfig:
        """The call's config, its run named for the node."""
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
        """The call's record, with its message or its error."""
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


class Proposer(ModelNode):
    """Answers once; a failure becomes a record, not an exception."""

    def conversation(self, state: MoAState) -> list[BaseMessage]:
        """The conversation with tools and tool turns as text."""
        # Proposers propose in text: tools and tool turns reach them as text.
        return tool_turns_as_text(state["messages"], state.get("tools", []))

    def done(
        self,
        config: RunnableConfig,
        start: Start,
        message: BaseMessage | None,
        error: Exception | None,
    ) -> dict:
        """Record the call; a failure or an empty answer becomes the record's error."""
        if error is None and message is not None and not message.text.strip():
            error = ValueError("empty response")
        if error is not None:
            logger.warning("%s failed: %s", self.name, describe_error(error))
            message = None
        call = self.record(*start, message=message, error=error)
        _emit(config, CALL_ERROR if error else CALL_END, call)
        return {"calls": [call]}

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node: one model call, its record in the state."""
        start = self.started(state, config)
        message, error = None, None
        try:
            message = self.model.invoke(self.inputs(state), self.config(config))
        except Exception as caught:  # noqa: BLE001 - recorded; the join decides
            error = caught
        return self.done(config, start, message, error)

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node, for async runs."""
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


class Aggregator(ModelNode):
    """Writes the answer; its failure is the run's failure (no silent fallback).

    With ``tools`` in the state they are bound to its model, so the answer may
    be tool calls.
    """

    def model_for(self, state: MoAState) -> Runnable[LanguageModelInput, BaseMessage]:
        """The model, with the state's tools bound to it."""
        if not state.get("tools"):
            return self.model
        return self.model.bind_tools(state["tools"], tool_choice=state.get("tool_choice"))

    def done(self, config: RunnableConfig, start: Start, message: BaseMessage) -> dict:
        """Record the call and return the answer's update."""
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
        """The node: one model call, its record in the state."""
        start = self.started(state, config)
        model, inputs = self.model_for(state), self.inputs(state)
        kwargs = _configurable(config).get(AGGREGATOR_KWARGS) or {}
        if not _streaming(config):
            return self.done(config, start, model.invoke(inputs, self.config(config), **kwargs))
        answer = None
        for chunk in model.stream(inputs, self.config(config), **kwargs):
            answer = self.emit(answer, cast("BaseMessageChunk", chunk))
        return self.done(config, start, _require(answer, self.name))

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node, for async runs."""
        start = self.started(state, config)
        model, inputs = self.model_for(state), self.inputs(state)
        kwargs = _configurable(config).get(AGGREGATOR_KWARGS) or {}
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


class Ranker(ModelNode):
    """The LLM-ranker baseline: the aggregator picks a reference by number.

    Its answer is the chosen reference verbatim. A reply with no valid number
    takes reference 1, and the ranker's call record says so in ``error``.
    """

    def pick(
        self,
        state: MoAState,
        config: RunnableConfig,
        start: Start,
        reply: BaseMessage,
    ) -> dict:
        """Record the reply; the answer is the reference it names (1 if none)."""
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
        """The node: one model call, its record in the state."""
        start = self.started(state, config)
        reply = self.model.invoke(self.inputs(state), self.config(config))
        return self.pick(state, config, start, reply)

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node, for async runs."""
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
class Join:
    """Waits for a layer, checks enough succeeded, passes their texts on."""

    layer: int
    min_proposers: int

    def __call__(self, state: MoAState) -> dict:
        """The node: this run's records of the layer become the next references."""
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
