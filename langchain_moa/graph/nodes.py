"""The graph's nodes: a first check, a proposer per model, a join per layer, the aggregator.

A failed proposer writes a record with its error and its reason instead of
raising, and the join decides whether enough of the layer succeeded. Every
call runs within its ``timeout_s``, a proposer's also within its layer's
deadline (see ``limits``). The aggregator falls back to the stack's
``fallbacks`` in order, then (if asked) to the best reference; every failed
attempt is recorded, and the answer's metadata says it is degraded. Nothing
falls back silently.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, cast

from langchain_core.callbacks import BaseCallbackManager, dispatch_custom_event
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    message_chunk_to_message,
)
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import run_in_executor
from langgraph.config import get_stream_writer

from langchain_moa.accounting import (
    BadResponseError,
    ModelCall,
    describe_error,
    failure_reason,
)
from langchain_moa.costs import Rates
from langchain_moa.graph.agreement import Agreement, Verdict, acheck
from langchain_moa.graph.budget import context_budget, fit_references, text_only
from langchain_moa.graph.defence import cluster_filter, similarity_matrix
from langchain_moa.graph.limits import LayerClock, LayerClocks, acall_within, call_within
from langchain_moa.graph.prompts import Prompt, render_prompt, tool_turns_as_text
from langchain_moa.graph.state import (
    AGGREGATOR_KWARGS,
    ANSWER_CHUNK,
    CALL_END,
    CALL_ERROR,
    CALL_START,
    SHUFFLE_SEED,
    STREAM_ANSWER,
    Dropped,
    EarlyStopped,
    MoAState,
    carries_answer,
    check_conversation,
    turn,
)
from langchain_moa.graph.throttle import Throttles
from langchain_moa.stacks import Policy, ReferenceFilter, ReferenceFormat
from langchain_moa.stacks.factory import model_label

logger = logging.getLogger(__name__)

T = TypeVar("T")

Start = tuple[int, float, float]
"""A call's turn, wall-clock start and monotonic start."""


class LayerFailedError(RuntimeError):
    """Too few proposers of a layer succeeded to go on."""


class AggregatorFailedError(RuntimeError):
    """The aggregator and every fallback failed; the message names each failure."""


@dataclass(frozen=True)
class Begin:
    """The first node: refuse a conversation there is nothing to answer in; name the run.

    Given the turn's references (``reuse``), it passes them to the aggregator.
    With ``shuffle``, it draws the run's seed for reference orders (or takes
    ``configurable["moa_shuffle_seed"]``, to replay a run).
    """

    shuffle: bool = False

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node.

        Raises:
            ValueError: the conversation is empty, only a system message, or ends
                with the assistant's message.
        """
        check_conversation(state["messages"])
        seed = None
        if self.shuffle:
            given = _configurable(config).get(SHUFFLE_SEED)
            seed = int(given) if given is not None else secrets.randbits(32)
        # The key this run's layer clocks are kept under (concurrent runs share a graph).
        # Cleared always, so that a thread's next run proposes again unless told otherwise.
        update: dict[str, Any] = {
            "run": uuid.uuid4().hex,
            "reused": False,
            "reuse": None,
            "stopped": None,
            "ranking": None,
            "shuffle_seed": seed,
        }
        # Only this turn's: one left in a thread by a run that failed is another turn's.
        if (reuse := state.get("reuse")) and reuse["turn"] == turn(state):
            update |= {
                "references": reuse["references"],
                "reference_nodes": reuse["nodes"],
                "reused": True,
            }
        return update


begin = Begin()
"""The first node of a stack that keeps the proposers' order."""


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
    if _wants_custom_events(config):
        dispatch_custom_event(event, dict(data), config=config)


def _wants_custom_events(config: RunnableConfig) -> bool:
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
        return _usable(call_within(limited, timeout_s=self.policy.timeout_s, clock=clock))

    async def arun(
        self,
        model: BaseChatModel,
        call: Callable[[], Awaitable[BaseMessage]],
        clock: LayerClock | None = None,
    ) -> BaseMessage:
        """``run``, for async calls: cancelling the run cancels the call."""
        limited = self.throttles.awrap(model, call)
        return _usable(await acall_within(limited, timeout_s=self.policy.timeout_s, clock=clock))

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
        _emit(
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
        turn: int,
        started_at: float,
        t0: float,
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

        ``first_token`` is the monotonic time its first streamed token arrived;
        ``state`` gives the references it read (none in layer 1).
        """
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


@dataclass(frozen=True)
class Proposer(ModelNode):
    """Answers once; a failure becomes a record, not an exception."""

    clocks: LayerClocks = field(default_factory=LayerClocks)
    """Shared by the layer's proposers: its deadline (see ``limits``)."""

    def conversation(self, state: MoAState) -> list[BaseMessage]:
        """The conversation with tools and tool turns as text."""
        # Proposers propose in text: tools and tool turns reach them as text.
        return tool_turns_as_text(state["messages"], state.get("tools", []))

    def clock(self, state: MoAState) -> LayerClock:
        """This run's clock of the layer."""
        return self.clocks.get(state.get("run", ""), self.layer, self.policy)

    def done(
        self,
        state: MoAState,
        config: RunnableConfig,
        start: Start,
        message: BaseMessage | None,
        error: Exception | None,
        *,
        note: str | None,
        clock: LayerClock,
    ) -> dict:
        """Record the call; a failure (an empty answer is one) becomes the record's error."""
        if error is not None:
            logger.warning("%s failed: %s", self.name, describe_error(error))
            message = None
        else:
            clock.answered()
        call = self.record(*start, message=message, error=error, note=note, state=state)
        _emit(config, CALL_ERROR if error else CALL_END, call)
        return {"calls": [call]}

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node: one model call, its record in the state."""
        start, clock = self.started(state, config), self.clock(state)
        message, error, note = None, None, None
        try:
            inputs, note = self.inputs(state)
            message = self.run(
                self.model, lambda: self.model.invoke(inputs, self.config(config)), clock
            )
        except Exception as caught:  # noqa: BLE001 - recorded; the join decides
            error = caught
        return self.done(state, config, start, message, error, note=note, clock=clock)

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node, for async runs; cancelling the run cancels the call."""
        start, clock = self.started(state, config), self.clock(state)
        message, error, note = None, None, None
        try:
            inputs, note = await self.ainputs(state)
            message = await self.arun(
                self.model, lambda: self.model.ainvoke(inputs, self.config(config)), clock
            )
        except Exception as caught:  # noqa: BLE001 - recorded; the join decides
            error = caught
        return self.done(state, config, start, message, error, note=note, clock=clock)


def stream_whole(config: RunnableConfig, answer: AIMessage) -> None:
    """Send an answer that exists whole (a chosen reference) to a streaming caller.

    One chunk: splitting a finished text would only fake streaming.
    """
    if _streaming(config):
        get_stream_writer()(
            {"event": ANSWER_CHUNK, "chunk": AIMessageChunk(content=answer.content)}
        )


def _answer(answer: AIMessage, calls: list[ModelCall]) -> dict:
    """The final node's update: its calls, the answer, and the answer in the chat."""
    return {"calls": calls, "answer": answer, "messages": [answer]}


def most_agreed(references: Sequence[str]) -> int:
    """The index of the reference most like the others (the first on a tie)."""
    kernel = similarity_matrix(references)
    scores = [sum(row) - row[index] for index, row in enumerate(kernel)]
    return scores.index(max(scores))


@dataclass
class Attempt:
    """One aggregator's try at the answer."""

    index: int
    """0 for the aggregator, then each fallback's place."""
    node: str
    model: BaseChatModel
    state: MoAState
    config: RunnableConfig
    start: Start
    inputs: list[BaseMessage] = field(default_factory=list)
    note: str | None = None
    first_token: float | None = None
    """Monotonic time its first chunk went out; None until then (and when not streamed)."""

    @property
    def streamed(self) -> bool:
        """Whether part of its answer has gone out (a stream cannot take it back)."""
        return self.first_token is not None


@dataclass(frozen=True)
class Final(ModelNode):
    """The last node: the aggregator, then each fallback in order, then the last resort.

    Every failed attempt is recorded with its reason. Once part of a streamed
    answer is out no other model takes over: it would start a second answer.
    """

    fallbacks: tuple[BaseChatModel, ...] = ()
    """Aggregators to try in order when the one before failed."""
    best_proposer_fallback: bool = False
    """Answer with the most agreed-upon reference when every aggregator failed."""

    def attempts(self, state: MoAState, config: RunnableConfig) -> Iterator[Attempt]:
        """Each aggregator's attempt, started (announced) as it is reached."""
        models = [self.model, *self.fallbacks]
        for index, model in enumerate(models):
            node = self.name if index == 0 else f"{self.name}/fallback-{index}"
            start = self.started(state, config, model, node=node)
            yield Attempt(self.index + index, node, model, state, config, start)

    def kwargs(self, config: RunnableConfig) -> dict[str, Any]:
        """Call options for the aggregator alone (``stop``...)."""
        return dict(_configurable(config).get(AGGREGATOR_KWARGS) or {})

    def call(self, attempt: Attempt) -> BaseMessage:
        """One attempt's call."""
        raise NotImplementedError

    async def acall_model(self, attempt: Attempt) -> BaseMessage:
        """``call``, for async runs."""
        raise NotImplementedError

    def answered(self, attempt: Attempt, reply: BaseMessage, call: ModelCall) -> AIMessage:
        """The answer a successful reply gives (``call`` may be amended)."""
        raise NotImplementedError

    def failed(self, attempt: Attempt, error: Exception) -> ModelCall:
        """Record and announce a failed attempt."""
        logger.warning("%s failed: %s", attempt.node, describe_error(error))
        call = self.record(
            *attempt.start,
            error=error,
            node=attempt.node,
            model=attempt.model,
            index=attempt.index,
            first_token=attempt.first_token,
            state=attempt.state,
        )
        _emit(attempt.config, CALL_ERROR, call)
        return call

    def success(self, attempt: Attempt, reply: BaseMessage, calls: list[ModelCall]) -> dict:
        """The update for an attempt's answer."""
        call = self.record(
            *attempt.start,
            message=reply,
            node=attempt.node,
            model=attempt.model,
            index=attempt.index,
            note=attempt.note,
            first_token=attempt.first_token,
            state=attempt.state,
        )
        answer = self.answered(attempt, reply, call)
        _emit(attempt.config, CALL_END, call)
        return _answer(answer, [*calls, call])

    def last_resort(
        self,
        state: MoAState,
        config: RunnableConfig,
        calls: list[ModelCall],
        *,
        streamed: bool = False,
    ) -> dict:
        """The most agreed-upon reference when allowed, else the error naming every failure.

        Raises:
            AggregatorFailedError: no aggregator answered and there is no last
                resort, or part of a failed answer was already streamed.
        """
        references = state.get("references", [])
        failures = "; ".join(
            f"{c['node']} ({c['model']}): {c['reason']}: {c['error']}" for c in calls
        )
        if streamed:
            msg = (
                f"the answer failed after part of it was streamed (no other model may "
                f"finish it): {failures}"
            )
            raise AggregatorFailedError(msg)
        if not (self.best_proposer_fallback and references):
            msg = f"every aggregator failed: {failures}"
            raise AggregatorFailedError(msg)
        chosen = most_agreed(references)
        source = state.get("reference_nodes", [])
        author = source[chosen] if chosen < len(source) else f"reference {chosen + 1}"
        answer = AIMessage(content=references[chosen])
        call = ModelCall(
            turn=turn(state),
            layer=self.layer,
            index=self.index + len(calls),
            node=f"{self.name}/best-proposer",
            model=author,
            text=answer.text,
            usage=None,
            started_at=time.time(),
            latency_s=0.0,
            # No model was called: it costs nothing.
            ttft_s=None,
            cost_usd=0.0,
            tflops=0.0,
            error=None,
            reason=None,
            note=(
                f"every aggregator failed; the answer is {author}'s, "
                "the reference most like the others"
            ),
            references=list(source),
        )
        stream_whole(config, answer)
        _emit(config, CALL_END, call)
        return _answer(answer, [*calls, call])

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node: the first aggregator to answer writes the answer."""
        calls: list[ModelCall] = []
        for attempt in self.attempts(state, config):
            try:
                attempt.inputs, attempt.note = self.inputs(state, attempt.model)
                reply = self.run(attempt.model, partial(self.call, attempt))
            except Exception as error:  # noqa: BLE001 - recorded; the next one tries
                calls.append(self.failed(attempt, error))
                if attempt.streamed:
                    return self.last_resort(state, config, calls, streamed=True)
                continue
            return self.success(attempt, reply, calls)
        return self.last_resort(state, config, calls)

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node, for async runs; cancelling the run cancels the call."""
        calls: list[ModelCall] = []
        for attempt in self.attempts(state, config):
            try:
                attempt.inputs, attempt.note = await self.ainputs(state, attempt.model)
                reply = await self.arun(attempt.model, partial(self.acall_model, attempt))
            except Exception as error:  # noqa: BLE001 - recorded; the next one tries
                calls.append(self.failed(attempt, error))
                if attempt.streamed:
                    return self.last_resort(state, config, calls, streamed=True)
                continue
            return self.success(attempt, reply, calls)
        return self.last_resort(state, config, calls)


@dataclass(frozen=True)
class Aggregator(Final):
    """Writes the answer from the last layer's references.

    With ``tools`` in the state they are bound to its model, so the answer may
    be tool calls.
    """

    @staticmethod
    def model_for(attempt: Attempt) -> Runnable[LanguageModelInput, BaseMessage]:
        """The attempt's model, with the state's tools bound to it."""
        state = attempt.state
        if not state.get("tools"):
            return attempt.model
        return attempt.model.bind_tools(state["tools"], tool_choice=state.get("tool_choice"))

    @staticmethod
    def emit(
        attempt: Attempt, answer: BaseMessageChunk | None, chunk: BaseMessageChunk
    ) -> BaseMessageChunk:
        """Send one chunk to the stream; return the answer so far."""
        get_stream_writer()({"event": ANSWER_CHUNK, "chunk": chunk})
        # A role-only first chunk is neither a first token nor an answer to take back.
        if attempt.first_token is None and carries_answer(chunk):
            attempt.first_token = time.perf_counter()
        return chunk if answer is None else answer + chunk

    def call(self, attempt: Attempt) -> BaseMessage:
        """The aggregator's call, streamed to the caller when asked."""
        runnable, kwargs = self.model_for(attempt), self.kwargs(attempt.config)
        config = self.config(attempt.config, attempt.node)
        if not _streaming(attempt.config):
            return runnable.invoke(attempt.inputs, config, **kwargs)
        answer = None
        for chunk in runnable.stream(attempt.inputs, config, **kwargs):
            answer = self.emit(attempt, answer, cast("BaseMessageChunk", chunk))
        return _require(answer, attempt.node)

    async def acall_model(self, attempt: Attempt) -> BaseMessage:
        """``call``, for async runs."""
        runnable, kwargs = self.model_for(attempt), self.kwargs(attempt.config)
        config = self.config(attempt.config, attempt.node)
        if not _streaming(attempt.config):
            return await runnable.ainvoke(attempt.inputs, config, **kwargs)
        answer = None
        async for chunk in runnable.astream(attempt.inputs, config, **kwargs):
            answer = self.emit(attempt, answer, cast("BaseMessageChunk", chunk))
        return _require(answer, attempt.node)

    def answered(self, attempt: Attempt, reply: BaseMessage, call: ModelCall) -> AIMessage:  # noqa: ARG002 - the reply alone is the answer
        """The reply is the answer.

        Raises:
            TypeError: the model answered with something other than an AIMessage.
        """
        answer = message_chunk_to_message(reply)
        if not isinstance(answer, AIMessage):
            msg = f"{attempt.node}: expected an AIMessage, got {type(answer).__name__}"
            raise TypeError(msg)
        return answer


def _usable(reply: BaseMessage) -> BaseMessage:
    """The reply, unless it holds neither text nor tool calls.

    Raises:
        BadResponseError: the reply is empty.
    """
    calls = getattr(reply, "tool_calls", None) or getattr(reply, "tool_call_chunks", None)
    if not reply.text.strip() and not calls:
        msg = "empty response"
        raise BadResponseError(msg)
    return reply


def _require(message: BaseMessageChunk | None, node: str) -> BaseMessageChunk:
    if message is None:
        msg = f"{node}: the model streamed nothing"
        raise BadResponseError(msg)
    return message


@dataclass(frozen=True)
class Join:
    """Waits for a layer, checks enough succeeded, passes their texts on.

    With ``reference_filter`` it first drops the references that disagree
    with the majority (``defence.cluster_filter``) and records which. With
    ``shuffle`` it orders the references by the run's seed. With ``agreement``
    (early stop, not on the last proposer layer) it ends the proposer layers
    when the references agree, and records where and what it saved.
    """

    layer: int
    min_proposers: int
    reference_filter: ReferenceFilter | None = None
    shuffle: bool = False
    agreement: Agreement | None = None
    """Early stop's test of the references; None runs every layer."""
    later_calls: int = 0
    """Proposer calls of the layers after this one: what stopping here saves."""

    def __call__(self, state: MoAState) -> dict:
        """The node: this run's records of the layer become the next references.

        Raises:
            LayerFailedError: fewer than ``min_proposers`` answered; the message
                names each failure and its reason.
        """
        update, ok = self.joined(state)
        if self.agreement is not None:
            update["stopped"] = self.stopped(state, self.agreement(update["references"]), ok)
        return update

    async def acall(self, state: MoAState) -> dict:
        """The node, for async runs: embeddings are computed without blocking the loop."""
        update, ok = self.joined(state)
        if self.agreement is not None:
            verdict = await acheck(self.agreement, update["references"])
            update["stopped"] = self.stopped(state, verdict, ok)
        return update

    def joined(self, state: MoAState) -> tuple[dict, list[ModelCall]]:
        """The update with the layer's references, and the layer's successful calls.

        Raises:
            LayerFailedError: fewer than ``min_proposers`` answered.
        """
        # Only this run's calls: a thread keeps earlier runs' calls too.
        now = turn(state)
        calls = sorted(
            (c for c in state["calls"] if c["layer"] == self.layer and c["turn"] == now),
            key=lambda c: c["index"],
        )
        ok = [c for c in calls if c["error"] is None]
        if len(ok) < self.min_proposers:
            failures = "; ".join(
                f"{c['node']}: {c['reason']}: {c['error']}" for c in calls if c["error"]
            )
            msg = (
                f"layer {self.layer}: {len(ok)} of {len(calls)} proposers succeeded, "
                f"min_proposers is {self.min_proposers}. Failures: {failures}"
            )
            raise LayerFailedError(msg)
        texts = [cast("str", c["text"]) for c in ok]
        kept = list(range(len(ok)))
        if self.reference_filter == "cluster":
            kept = cluster_filter(texts)
        dropped = [
            Dropped(turn=now, layer=self.layer, node=c["node"], why="cluster filter: an outlier")
            for index, c in enumerate(ok)
            if index not in kept
        ]
        kept = self.ordered(state, kept)
        update = {
            "references": [texts[i] for i in kept],
            "reference_nodes": [ok[i]["node"] for i in kept],
            "dropped": dropped,
        }
        return update, ok

    def ordered(self, state: MoAState, items: list[T]) -> list[T]:
        """``items`` in the order this layer's references are shown in this run.

        With ``shuffle``, one order per layer and run, replayed from the run's seed.
        """
        if self.shuffle:
            items = list(items)
            random.Random(f"{state.get('shuffle_seed')}/{self.layer}").shuffle(items)  # noqa: S311 - an order, not a secret
        return items

    def stopped(
        self, state: MoAState, verdict: Verdict, ok: list[ModelCall]
    ) -> EarlyStopped | None:
        """Where the run stops, when the references agree; None to go on."""
        if not verdict.agree:
            return None
        tokens = [c["usage"]["total_tokens"] for c in ok if c["usage"] is not None]
        per_call = sum(tokens) / len(tokens) if tokens and len(tokens) == len(ok) else None
        return EarlyStopped(
            turn=turn(state),
            layer=self.layer,
            detail=verdict.detail,
            score=verdict.score,
            calls_saved=self.later_calls,
            tokens_saved=None if per_call is None else round(per_call * self.later_calls),
        )
