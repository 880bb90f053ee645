"""What every model node shares: its inputs, a call within its limits, its record.

`ModelNode` is the base of a proposer and of the node that writes the answer: the
messages it sends (references fitted to the model's context), a call within the
provider's limit and its time limits (see ``limits``, ``throttle``), the events a
UI follows (`emit`), and the call's `ModelCall` record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import BaseCallbackManager, dispatch_custom_event
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import run_in_executor
from langgraph.config import get_stream_writer

from langchain_moa.accounting import (
    BadResponseError,
    ModelCall,
    describe_error,
    failure_reason,
)
from langchain_moa.costs import Rates
from langchain_moa.graph.budget import context_budget, fit_references, text_only
from langchain_moa.graph.limits import LayerClock, acall_within, call_within
from langchain_moa.graph.prompts import Prompt, render_prompt
from langchain_moa.graph.state import (
    ANSWER_CHUNK,
    CALL_START,
    STREAM_ANSWER,
    MoAState,
    turn,
)
from langchain_moa.graph.throttle import Throttles
from langchain_moa.stacks import Policy, ReferenceFormat
from langchain_moa.stacks.factory import model_label

# One logger for every node module, under the name it had before they were split.
logger = logging.getLogger("langchain_moa.graph.nodes")

Start = tuple[int, float, float]
"""A call's turn, wall-clock start and monotonic start."""


def configurable(config: RunnableConfig) -> Mapping[str, Any]:
    """The run's ``configurable`` (our own options: streaming, the aggregator's kwargs)."""
    return config.get("configurable") or {}


def streaming(config: RunnableConfig) -> bool:
    """Whether the caller asked for the answer as custom stream events."""
    return bool(configurable(config).get(STREAM_ANSWER))


def emit(config: RunnableConfig, event: str, data: Mapping[str, Any]) -> None:
    """Tell a UI how the layers fill in.

    Sent twice: as a LangGraph custom stream event, and as a LangChain custom
    event (which ``astream_events`` and callback handlers see).
    """
    get_stream_writer()({"event": event, **data})
    if wants_custom_events(config):
        dispatch_custom_event(event, dict(data), config=config)


def wants_custom_events(config: RunnableConfig) -> bool:
    """Whether any of the run's callback handlers takes custom events.

    ``dispatch_custom_event`` sets up a callback manager on every call (about
    a third of a millisecond), handlers or not: skipped when none would listen.
    """
    callbacks = config.get("callbacks")
    handlers = callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else callbacks
    return any(not handler.ignore_custom_event for handler in handlers or ())


@dataclass(frozen=True)
class ModelNode:
    """What a proposer node and the aggregator node share."""

    layer: int
    index: int
    name: str
    model: BaseChatModel
    prompt: Prompt
    policy: Policy
    """The time limits its calls run under."""
    max_input_tokens: int | None = None
    """The stack's context budget for every model; None takes each model's profile."""
    reference_format: ReferenceFormat = "paper"
    rates: Rates = field(default_factory=Rates)
    """The prices and model sizes its calls' cost and TFLOPs come from."""
    throttles: Throttles = field(default_factory=Throttles)
    """The stack's provider limits, which its calls wait on."""

    def conversation(self, state: MoAState) -> list[BaseMessage]:
        """The conversation this node's model answers."""
        return list(state["messages"])

    def prompt_for(self, state: MoAState) -> Prompt:  # noqa: ARG002 - a hook for subclasses
        """The prompt this run's call reads its references with (``prompt`` by default)."""
        return self.prompt

    def inputs(
        self, state: MoAState, model: BaseChatModel | None = None
    ) -> tuple[list[BaseMessage], str | None]:
        """The messages sent (with the references from layer 2 on), and a note on them.

        The note says what was done to fit the model: references shortened,
        images dropped.
        """
        model = model or self.model
        # Layer 1 sees the conversation alone; later layers the last join's refs.
        references = state.get("references", []) if self.layer > 1 else []
        conversation, dropped = text_only(model, self.conversation(state))

        prompt = self.prompt_for(state)

        def render(shown: list[str]) -> list[BaseMessage]:
            return render_prompt(
                prompt,
                conversation,
                shown,
                self.layer,
                reference_format=self.reference_format,
            )

        budget = context_budget(model, self.max_input_tokens)
        messages, shortened = fit_references(model, budget, references, render)
        return messages, "; ".join(filter(None, [dropped, shortened])) or None

    async def ainputs(
        self, state: MoAState, model: BaseChatModel | None = None
    ) -> tuple[list[BaseMessage], str | None]:
        """``inputs``, off the event loop when tokens may have to be counted."""
        if self.layer == 1 or context_budget(model or self.model, self.max_input_tokens) is None:
            return self.inputs(state, model)
        # Counting may block: a tokenizer's first load, tiktoken's download.
        return await run_in_executor(None, self.inputs, state, model)

    def run(
        self,
        model: BaseChatModel,
        call: Callable[[], BaseMessage],
        clock: LayerClock | None = None,
    ) -> BaseMessage:
        """``call`` of ``model`` within its provider's limit, its time limits, and usable.

        Raises:
            CallTimeoutError: it ran past ``timeout_s`` or its layer's deadline.
            BadResponseError: its reply is empty.
        """
        limited = self.throttles.wrap(model, call)
        return usable(call_within(limited, timeout_s=self.policy.timeout_s, clock=clock))

    async def arun(
        self,
        model: BaseChatModel,
        call: Callable[[], Awaitable[BaseMessage]],
        clock: LayerClock | None = None,
    ) -> BaseMessage:
        """``run``, for async calls: cancelling the run cancels the call."""
        limited = self.throttles.awrap(model, call)
        return usable(await acall_within(limited, timeout_s=self.policy.timeout_s, clock=clock))

    def config(self, config: RunnableConfig, node: str | None = None) -> RunnableConfig:
        """The call's config, its run named for the node (or the fallback it tries)."""
        # The run name makes a trace read like the graph.
        return {**config, "run_name": node or self.name}

    def started(
        self,
        state: MoAState,
        config: RunnableConfig,
        model: BaseChatModel | None = None,
        *,
        node: str | None = None,
    ) -> Start:
        """Announce the call; return its turn, wall-clock and monotonic start."""
        emit(
            config,
            CALL_START,
            {
                "node": node or self.name,
                "layer": self.layer,
                "model": model_label(model or self.model),
            },
        )
        return turn(state), time.time(), time.perf_counter()

    def record(
        self,
        start: Start,
        *,
        message: BaseMessage | None = None,
        error: BaseException | None = None,
        note: str | None = None,
        node: str | None = None,
        model: BaseChatModel | None = None,
        index: int | None = None,
        first_token: float | None = None,
        state: MoAState | None = None,
    ) -> ModelCall:
        """The call's record, with its message or its error (and the error's reason).

        ``start`` is what ``started`` returned; ``first_token`` is the monotonic
        time its first streamed token arrived; ``state`` gives the references it
        read (none in layer 1).
        """
        turn, started_at, t0 = start
        label = model_label(model or self.model)
        usage = getattr(message, "usage_metadata", None)
        return ModelCall(
            turn=turn,
            layer=self.layer,
            index=self.index if index is None else index,
            node=node or self.name,
            model=label,
            text=None if message is None else message.text,
            usage=usage,
            started_at=started_at,
            latency_s=time.perf_counter() - t0,
            ttft_s=None if first_token is None else first_token - t0,
            cost_usd=self.rates.cost_usd(label, usage),
            tflops=self.rates.tflops(label, usage),
            error=None if error is None else describe_error(error),
            reason=None if error is None else failure_reason(error),
            note=note,
            references=self.shown(state),
        )

    def shown(self, state: MoAState | None) -> list[str] | None:
        """The nodes whose answers this node read, in the order shown."""
        if state is None or self.layer == 1:
            return None
        return list(state.get("reference_nodes", []))


def usable(reply: BaseMessage) -> BaseMessage:
    """The reply, unless it holds neither text nor tool calls.

    Raises:
        BadResponseError: the reply is empty.
    """
    calls = getattr(reply, "tool_calls", None) or getattr(reply, "tool_call_chunks", None)
    if not reply.text.strip() and not calls:
        msg = "empty response"
        raise BadResponseError(msg)
    return reply


def stream_whole(config: RunnableConfig, answer: AIMessage) -> None:
    """Send an answer that exists whole (a chosen reference) to a streaming caller.

    One chunk: splitting a finished text would only fake streaming.
    """
    if streaming(config):
        get_stream_writer()(
            {"event": ANSWER_CHUNK, "chunk": AIMessageChunk(content=answer.content)}
        )
