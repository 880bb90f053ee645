"""The node that writes the answer: the aggregator, then each fallback, then the last resort.

`Final` tries the aggregator, then the stack's ``fallbacks`` in order, then (if
asked) the most agreed-upon reference; every failed attempt is recorded with its
reason, and the answer's metadata says it is degraded. Nothing falls back
silently. `Aggregator` is the paper's: it synthesizes, streaming its answer when
the caller streams.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, cast

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    BaseMessageChunk,
    message_chunk_to_message,
)
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_stream_writer

from langchain_moa.accounting import (
    BadResponseError,
    ModelCall,
    describe_error,
)
from langchain_moa.graph.calls import (
    ModelNode,
    Start,
    configurable,
    emit,
    logger,
    stream_whole,
    streaming,
)
from langchain_moa.graph.defence import similarity_matrix
from langchain_moa.graph.errors import AggregatorFailedError
from langchain_moa.graph.state import (
    AGGREGATOR_KWARGS,
    ANSWER_CHUNK,
    CALL_END,
    CALL_ERROR,
    MoAState,
    carries_answer,
    turn,
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
        """Call options for the aggregator alone (``stop``...), as the config carries them.

        ``tool_choice`` is one of them, but it is bound with the tools
        (``Aggregator.model_for``), not passed to a call that may have none.
        """
        options = dict(configurable(config).get(AGGREGATOR_KWARGS) or {})
        options.pop("tool_choice", None)
        return options

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
            attempt.start,
            error=error,
            node=attempt.node,
            model=attempt.model,
            index=attempt.index,
            first_token=attempt.first_token,
            state=attempt.state,
        )
        emit(attempt.config, CALL_ERROR, call)
        return call

    def success(self, attempt: Attempt, reply: BaseMessage, calls: list[ModelCall]) -> dict:
        """The update for an attempt's answer."""
        call = self.record(
            attempt.start,
            message=reply,
            node=attempt.node,
            model=attempt.model,
            index=attempt.index,
            note=attempt.note,
            first_token=attempt.first_token,
            state=attempt.state,
        )
        answer = self.answered(attempt, reply, call)
        emit(attempt.config, CALL_END, call)
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
        emit(config, CALL_END, call)
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
        """The attempt's model, with the state's tools bound to it.

        The tools are the state's: every node reads them (proposers as text).
        How the aggregator must use them, ``tool_choice``, is a call option like
        the rest, in the config; a ``tool_choice`` in the state (the old way,
        deprecated by ``begin``) is read when the config has none.
        """
        state = attempt.state
        if not state.get("tools"):
            return attempt.model
        options = configurable(attempt.config).get(AGGREGATOR_KWARGS) or {}
        choice = options.get("tool_choice", state.get("tool_choice"))
        return attempt.model.bind_tools(state["tools"], tool_choice=choice)

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
        if not streaming(attempt.config):
            return runnable.invoke(attempt.inputs, config, **kwargs)
        answer = None
        for chunk in runnable.stream(attempt.inputs, config, **kwargs):
            answer = self.emit(attempt, answer, cast("BaseMessageChunk", chunk))
        return _require(answer, attempt.node)

    async def acall_model(self, attempt: Attempt) -> BaseMessage:
        """``call``, for async runs."""
        runnable, kwargs = self.model_for(attempt), self.kwargs(attempt.config)
        config = self.config(attempt.config, attempt.node)
        if not streaming(attempt.config):
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


def _require(message: BaseMessageChunk | None, node: str) -> BaseMessageChunk:
    if message is None:
        msg = f"{node}: the model streamed nothing"
        raise BadResponseError(msg)
    return message


def plain_aggregator(node: Final, **changes: Any) -> Aggregator:
    """The paper's aggregator with ``node``'s model, prompt, fallbacks and limits.

    What a strategy's node composes when a step of it is plain synthesis
    (Self-MoA-Seq's every window, staircase when no partial step went out):
    ``changes`` rename it or move its index.
    """
    shared = {f.name: getattr(node, f.name) for f in fields(Aggregator) if hasattr(node, f.name)}
    return Aggregator(**{**shared, **changes})
