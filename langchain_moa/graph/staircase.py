"""Staircase streaming (Wang et al., 2025, arXiv 2510.05059): the answer starts early.

The final node runs the last proposer layer itself, every proposal streamed at
once, and writes the answer in steps. Step ``k`` waits until every proposal
still being written has grown by ``step_tokens`` since step ``k - 1`` read it
(or has ended), shows the aggregator what there is so far, marked unfinished,
with the answer written so far, and lets it write ``step_tokens`` more (then on
to the end of its sentence, twice as many at most, so that the next step picks
up a new sentence rather than half a word or number).
Once every proposal is complete, a last step finishes the answer with the
complete references. Each step's tokens go to a streaming caller as they
arrive, so the first token no longer waits for the slowest proposer.

Continuing an answer. An OpenAI-compatible server (llama.cpp's included) starts
a new assistant turn after a trailing assistant message rather than continuing
it. So a step's system message ends with the answer so far and a request to
write only what comes next (``CONTINUE_PROMPT``), and the conversation still
ends with the user's question. (Tried on SmolLM2-135M: the answer so far as an
assistant turn followed by a user turn asking to continue drew "I'm ready to
assist..." or a verbatim repeat; in the system message it drew the answer's
next part or a fresh start.) Small models often start such a reply by
repeating the answer so far; while a step's reply is still a copy of it
(whitespace aside) its chunks are held back, and a complete copy is dropped,
so the stream carries only what is new.

A step that ends by itself (before ``step_tokens``), with text of its own and
not cut by the model's token limit, has finished the answer: the proposers
still writing are stopped, and their records keep what they had written, with
a note. A step that added nothing is a failed step; the last step takes over.
After early stop, or when the turn's references are reused, the node is the
plain aggregator. With tools bound, or a reference filter, the layer is still
streamed here but there are no partial steps (a tool call cannot be written in
steps; the filter judges complete answers): the aggregator answers once, from
the joined references.

Why a sync and an async twin. An async core with the sync node as a thin
wrapper would have to run an event loop inside a sync call of the library (an
``asyncio.run``, or a loop in a thread of its own), which this project never
does, and a caller's sync-only model would then run in executor threads
anyway. So the sync node streams each proposal in a thread and waits on the
board's condition, the async one in tasks of the caller's loop (where
cancelling the run cancels every call); what they decide (``Board.ready``,
``quorum``, ``partial``, ``take``, ``after_partial``, ``joined``, ``ended``)
is written once, and only the calls are twins.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import aclosing, closing
from dataclasses import dataclass, field, replace
from functools import partial
from typing import cast

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    BaseMessageChunk,
)
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer

from langchain_moa.accounting import BadResponseError, ModelCall, describe_error
from langchain_moa.graph.calls import Start, emit, logger, streaming
from langchain_moa.graph.errors import LayerFailedError
from langchain_moa.graph.final import Aggregator, plain_aggregator
from langchain_moa.graph.join import Join
from langchain_moa.graph.limits import abandoned, acall_within, call_within
from langchain_moa.graph.plan import Plan
from langchain_moa.graph.prompts import Prompt, append_system
from langchain_moa.graph.proposer import Proposer
from langchain_moa.graph.staircase_text import (
    CONTINUE_PROMPT,
    PARTIAL_NOTE,
    UNFINISHED,
    Echo,
    joined,
    sentence_ends,
)
from langchain_moa.graph.state import (
    ANSWER_CHUNK,
    CALL_END,
    CALL_ERROR,
    MoAState,
    carries_answer,
    was_cut,
)
from langchain_moa.stacks import Staircase


@dataclass
class Proposal:
    """One proposer's stream, as the steps see it."""

    proposer: Proposer
    start: Start
    note: str | None = None
    message: BaseMessageChunk | None = None
    tokens: int = 0
    first_token: float | None = None
    done: bool = False
    record: ModelCall | None = None

    @property
    def text(self) -> str:
        """What it has written so far."""
        return "" if self.message is None else self.message.text

    @property
    def ok(self) -> bool:
        """Whether it finished with an answer."""
        return self.record is not None and self.record["error"] is None

    def whole(self) -> BaseMessage:
        """Its message once the stream ended.

        Raises:
            BadResponseError: it streamed nothing.
        """
        if self.message is None:
            msg = f"{self.proposer.name}: the model streamed nothing"
            raise BadResponseError(msg)
        return self.message


class Board:
    """The proposals in flight: what each has written, and who waits for more.

    Sync runs stream proposals in threads and wait on the condition; async
    runs stream them in tasks of the node's loop and wait on the event.
    """

    def __init__(self, proposals: list[Proposal], *, is_async: bool = False) -> None:
        """Watch ``proposals``."""
        self.proposals = proposals
        self.condition = threading.Condition()
        self.changed = asyncio.Event() if is_async else None
        self.halted = threading.Event()
        self.faults: list[BaseException] = []
        """What failed in recording a proposal, in a thread that cannot raise it (sync runs)."""

    def _notify(self) -> None:
        self.condition.notify_all()
        if self.changed is not None:
            self.changed.set()

    def grew(self, proposal: Proposal, chunk: BaseMessageChunk) -> bool:
        """Add a chunk; False once the proposal was closed (stopped, or too late)."""
        with self.condition:
            if proposal.done or self.halted.is_set():
                return False
            proposal.message = chunk if proposal.message is None else proposal.message + chunk
            if carries_answer(chunk):
                proposal.tokens += 1
                proposal.first_token = proposal.first_token or time.perf_counter()
            self._notify()
            return True

    def close(self, proposal: Proposal, record: Callable[[], ModelCall]) -> ModelCall | None:
        """Write the proposal's record once; None when it was closed already."""
        with self.condition:
            if proposal.done:
                return None
            try:
                proposal.record = record()
            finally:
                # Even when recording fails: the node waits for every proposal to be done.
                proposal.done = True
                self._notify()
            return proposal.record

    def abandon(self) -> None:
        """Close every proposal still running, with no record: the node has failed.

        Their threads run on to their next chunk and would otherwise record and
        announce a call after the node raised.
        """
        with self.condition:
            self.halted.set()
            for proposal in self.proposals:
                proposal.done = True
            self._notify()

    def ready(self, read: list[int], step_tokens: int) -> bool:
        """Whether every proposal still running has ``step_tokens`` more than ``read``."""
        return all(
            p.done or p.tokens >= seen + step_tokens
            for p, seen in zip(self.proposals, read, strict=True)
        )

    def finished(self) -> bool:
        """Whether every proposal has ended."""
        return all(p.done for p in self.proposals)

    def wait(self, ready: Callable[[], bool]) -> None:
        """Block until ``ready()`` (sync runs)."""
        with self.condition:
            self.condition.wait_for(ready)

    async def await_(self, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()`` (async runs)."""
        assert self.changed is not None  # noqa: S101 - async boards have one
        while not ready():
            self.changed.clear()
            await self.changed.wait()


@dataclass
class Steps:
    """The answer as the steps have written it."""

    read: list[int]
    """Each proposal's tokens when the last step read it."""
    written: str = ""
    calls: list[ModelCall] = field(default_factory=list)
    number: int = 0
    finished: bool = False
    """Whether a step ended the answer by itself, before the proposals did."""


@dataclass
class Step:
    """One call of the aggregator: what it reads, and what it added to the answer."""

    node: StaircaseAggregator
    """The node as it makes this step (its name and prompt)."""
    state: MoAState
    """What it reads: the references shown."""
    config: RunnableConfig
    start: Start
    echo: Echo
    """Holds back a repeat of the answer so far."""
    cap: int | None
    """The most tokens it writes; None for the last step."""
    messages: list[BaseMessage] = field(default_factory=list)
    note: str | None = None
    added: str = ""
    tokens: int = 0
    raw: BaseMessageChunk | None = None
    """Its whole reply, as streamed (usage, when reported)."""
    capped: bool = False
    first_token: float | None = None
    error: Exception | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Guards ``added`` and the stream against a sync call left running past its timeout."""
    closed: bool = False
    """Set once the step is recorded: nothing more goes out or into ``added``."""

    def close(self) -> None:
        """Let nothing more out: a sync call abandoned at its timeout still runs."""
        with self.lock:
            self.closed = True


@dataclass(frozen=True)
class StaircaseAggregator(Aggregator):
    """The aggregator of ``staircase``: runs the last proposer layer and answers in steps."""

    proposers: tuple[Proposer, ...] = ()
    """The last proposer layer's nodes (their models, names and limits)."""
    join: Join = field(default_factory=lambda: Join(0, 1))
    """The last layer's join: ``min_proposers``, the reference filter and order."""
    step_tokens: int = 32
    """Tokens each running proposal grows by between steps; what a partial step writes
    (then on to the end of its sentence, twice as many at most)."""
    max_partial_steps: int | None = None
    """Steps on unfinished proposals at most; None for no limit."""

    def plain(self, state: MoAState) -> bool:
        """Whether this run is the plain aggregator's.

        So it is when there is no layer to stream: the turn's references are
        reused, or an earlier layer stopped early. Tools are not a reason: the
        builder left the last layer to this node, so it must still run it.
        """
        return bool(not self.proposers or state.get("reused") or state.get("stopped"))

    # --- the proposals ------------------------------------------------------------------

    def settle(
        self,
        board: Board,
        proposal: Proposal,
        state: MoAState,
        config: RunnableConfig,
        error: BaseException | None,
        *,
        note: str | None = None,
    ) -> None:
        """Record a proposal's end and announce it (nothing if it was closed already)."""
        proposer = proposal.proposer

        def record() -> ModelCall:
            return proposer.record(
                proposal.start,
                message=None if error is not None else proposal.message,
                error=error,
                note="; ".join(filter(None, [proposal.note, note])) or None,
                first_token=proposal.first_token,
                state=state,
            )

        call = board.close(proposal, record)
        if call is None:
            return
        if error is not None:
            logger.warning("%s failed: %s", proposer.name, describe_error(error))
        else:
            proposer.clock(state).answered()
        emit(config, CALL_ERROR if error else CALL_END, call)

    def propose(
        self, board: Board, proposal: Proposal, state: MoAState, config: RunnableConfig
    ) -> None:
        """Stream one proposal onto the board (sync runs: in a thread of its own)."""
        proposer, error = proposal.proposer, None
        try:
            inputs, proposal.note = proposer.inputs(state)

            def call() -> BaseMessage:
                stream = proposer.model.stream(inputs, proposer.config(config))
                with closing(cast("Generator[BaseMessageChunk, None, None]", stream)) as chunks:
                    for chunk in chunks:
                        if not board.grew(proposal, chunk):
                            break
                return proposal.whole()

            proposer.run(proposer.model, call, proposer.clock(state))
        except Exception as caught:  # noqa: BLE001 - recorded; min_proposers decides
            error = caught
        try:
            self.settle(board, proposal, state, config, error)
        except Exception as fault:  # noqa: BLE001 - raised by the node, as an async run's is
            with board.condition:
                board.faults.append(fault)

    async def apropose(
        self, board: Board, proposal: Proposal, state: MoAState, config: RunnableConfig
    ) -> None:
        """``propose``, as a task of the node's loop."""
        proposer, error = proposal.proposer, None
        try:
            inputs, proposal.note = await proposer.ainputs(state)

            async def call() -> BaseMessage:
                stream = proposer.model.astream(inputs, proposer.config(config))
                async with aclosing(
                    cast("AsyncGenerator[BaseMessageChunk, None]", stream)
                ) as chunks:
                    async for chunk in chunks:
                        if not board.grew(proposal, chunk):
                            break
                return proposal.whole()

            await proposer.arun(proposer.model, call, proposer.clock(state))
        except Exception as caught:  # noqa: BLE001 - recorded; min_proposers decides
            error = caught
        self.settle(board, proposal, state, config, error)

    def stop_proposals(self, board: Board, state: MoAState, config: RunnableConfig) -> None:
        """Stop the proposals still streaming: the answer was finished without them.

        One that wrote something keeps it, with a note (nothing failed); one that
        wrote nothing yet has no answer and is recorded as cancelled.
        """
        board.halted.set()
        for proposal in board.proposals:
            if proposal.done:
                continue
            note = (
                f"stopped after {proposal.tokens} tokens: the answer was finished "
                "before this proposal"
            )
            error = asyncio.CancelledError(note) if proposal.message is None else None
            self.settle(board, proposal, state, config, error, note=note)

    def quorum(self, board: Board) -> None:
        """Give up when too few proposals can still succeed, as the join would.

        Raises:
            LayerFailedError: fewer than ``min_proposers`` succeeded or are running.
        """
        alive = sum(not p.done or p.ok for p in board.proposals)
        if alive >= self.join.min_proposers:
            return
        failures = "; ".join(
            f"{c['node']}: {c['reason']}: {c['error']}"
            for c in (p.record for p in board.proposals)
            if c is not None and c["error"]
        )
        msg = (
            f"layer {self.join.layer}: {alive} of {len(board.proposals)} proposers can still "
            f"succeed, min_proposers is {self.join.min_proposers}. Failures: {failures}"
        )
        raise LayerFailedError(msg)

    def partial(self, state: MoAState, steps: Steps) -> bool:
        """Whether the next step may read unfinished proposals.

        Never with tools bound: a tool call cannot be written in steps, so the
        last step (the plain aggregator, tools bound) answers alone. Never with a
        reference filter: it judges complete answers, so a partial step could
        only show the references it would drop, and the answer would start from
        them.
        """
        if state.get("tools") or self.join.reference_filter is not None:
            return False
        return self.max_partial_steps is None or steps.number < self.max_partial_steps

    # --- the steps ----------------------------------------------------------------------

    def step_node(self, number: int, *, partial: bool) -> StaircaseAggregator:
        """The node as it makes step ``number``: named ``aggregator/step-N``.

        Every step is the aggregator's model at its place in the layer, so they
        share its index (their order is the order they ran in).
        """
        prompt: Prompt = self.prompt
        if partial and isinstance(prompt, str):
            prompt = PARTIAL_NOTE.format(marker=UNFINISHED) + prompt
        return replace(self, name=f"{self.name}/step-{number}", prompt=prompt)

    def step_state(self, state: MoAState, board: Board, steps: Steps) -> MoAState:
        """What a partial step reads: every proposal so far, the unfinished ones marked.

        With ``shuffle`` they are in the run's order for the layer, the one its
        join gives the last step (the same whenever every proposal succeeds).
        """
        order = self.join.ordered(state, list(board.proposals))
        with board.condition:
            steps.read = [p.tokens for p in board.proposals]
            shown = [
                (p.proposer.name, p.text if p.done else f"{p.text} {UNFINISHED}")
                for p in order
                if p.ok or (not p.done and p.text.strip())
            ]
        return {
            **state,
            "references": [text for _, text in shown],
            "reference_nodes": [node for node, _ in shown],
        }

    @staticmethod
    def continued(messages: list[BaseMessage], written: str) -> list[BaseMessage]:
        """A step's messages: the references, the conversation, then the answer so far."""
        if written:
            return append_system(messages, CONTINUE_PROMPT.format(written=written))
        return messages

    def new_step(
        self, state: MoAState, config: RunnableConfig, steps: Steps, *, last: bool
    ) -> Step:
        """Announce the next step, its messages still to build.

        A partial step is ``aggregator/step-N`` and writes about ``step_tokens``
        (or ends the answer by itself, under that name); the last, once every
        proposal is complete, is ``aggregator`` and writes to the end.
        """
        steps.number += 1
        node = self.step_node(steps.number, partial=not last)
        if last:
            node = replace(node, name=self.name)
        cap = None if last else self.step_tokens
        return Step(node, state, config, node.started(state, config), Echo(steps.written), cap)

    def begin_step(
        self, state: MoAState, config: RunnableConfig, steps: Steps, *, last: bool
    ) -> Step:
        """Start the next step (sync): announce it and build its messages."""
        step = self.new_step(state, config, steps, last=last)
        messages, step.note = step.node.inputs(state)
        step.messages = self.continued(messages, steps.written)
        return step

    async def abegin_step(
        self, state: MoAState, config: RunnableConfig, steps: Steps, *, last: bool
    ) -> Step:
        """``begin_step``, for async runs: counting tokens to fit the references may block."""
        step = self.new_step(state, config, steps, last=last)
        messages, step.note = await step.node.ainputs(state)
        step.messages = self.continued(messages, steps.written)
        return step

    def take(self, step: Step, chunk: BaseMessageChunk, steps: Steps) -> bool:
        """Take one streamed chunk, send on what is new; True once ``cap`` tokens are out.

        True at once when the step was closed: a sync call abandoned at its
        timeout runs on in its thread, and what it writes after it was recorded
        as failed must reach neither the stream nor the answer.
        """
        gone = abandoned()
        with step.lock:
            if step.closed or (gone is not None and gone.is_set()):
                step.closed = True
                return True
            step.raw = chunk if step.raw is None else step.raw + chunk
            for piece in step.echo.feed(chunk):
                if not carries_answer(piece):
                    continue
                out = piece if step.added else joined(steps.written, piece)
                if streaming(step.config):
                    get_stream_writer()({"event": ANSWER_CHUNK, "chunk": out})
                step.first_token = step.first_token or time.perf_counter()
                step.added += out.text
                step.tokens += 1
            if step.cap is not None and step.tokens >= step.cap:
                # Past step_tokens, a step goes on to the end of its sentence (twice as far at
                # most): a continuation picks up a new sentence far better than a cut word.
                step.capped = step.tokens >= 2 * step.cap or sentence_ends(step.added)
            return step.capped

    def stream_step(self, step: Step, steps: Steps) -> BaseMessage:
        """One step's call (sync): its new tokens streamed out as they come."""
        config = step.node.config(step.config)
        stream = self.model.stream(step.messages, config, **self.kwargs(step.config))
        with closing(cast("Generator[BaseMessageChunk, None, None]", stream)) as chunks:
            for chunk in chunks:
                if self.take(step, chunk, steps):
                    break
        return AIMessage(content=step.added)

    async def astream_step(self, step: Step, steps: Steps) -> BaseMessage:
        """``stream_step``, for async runs."""
        config = step.node.config(step.config)
        stream = self.model.astream(step.messages, config, **self.kwargs(step.config))
        async with aclosing(cast("AsyncGenerator[BaseMessageChunk, None]", stream)) as chunks:
            async for chunk in chunks:
                if self.take(step, chunk, steps):
                    break
        return AIMessage(content=step.added)

    def run_step(self, step: Step, steps: Steps) -> None:
        """A step's call within the aggregator's limits (sync); a failure is kept on it."""
        try:
            call = partial(self.stream_step, step, steps)
            call_within(
                self.throttles.wrap(self.model, call), timeout_s=self.policy.timeout_s, clock=None
            )
        except Exception as caught:  # noqa: BLE001 - recorded by stepped
            # Closed before it is recorded: an abandoned call's later chunks are dropped.
            step.close()
            step.error = caught

    async def arun_step(self, step: Step, steps: Steps) -> None:
        """``run_step``, for async runs."""
        try:
            call = partial(self.astream_step, step, steps)
            await acall_within(
                self.throttles.awrap(self.model, call), timeout_s=self.policy.timeout_s, clock=None
            )
        except Exception as caught:  # noqa: BLE001 - recorded by stepped
            step.error = caught

    def stepped(self, step: Step, steps: Steps) -> ModelCall:
        """Record a step: the text it added to the answer, the usage of its whole reply.

        A step stopped at ``step_tokens`` closed its stream before the provider
        reported usage: its usage is None (unknown; a note would mark every
        staircase answer degraded). What a failed step sent out stays in the
        answer (a stream cannot take it back), so its record keeps that text
        beside its error: the steps' texts put together are the answer.
        """
        step.close()
        usage = getattr(step.raw, "usage_metadata", None)
        error = step.error
        message = AIMessage(content=step.added, usage_metadata=usage)
        call = step.node.record(
            step.start,
            message=message,
            error=error,
            note=step.note,
            first_token=step.first_token,
            state=step.state,
        )
        steps.calls.append(call)
        steps.written += step.added
        if error is not None:
            logger.warning("%s failed: %s", step.node.name, describe_error(error))
        emit(step.config, CALL_ERROR if error else CALL_END, call)
        return call

    def after_partial(self, step: Step, steps: Steps) -> bool:
        """Record a partial step; whether partial steps go on after it.

        A failed step ends them (the last step, with every fallback when nothing
        went out yet, takes over); so does a step that added nothing (an empty
        reply, or only a copy of the answer so far): it cannot have finished an
        answer it did not write. A step that ended by itself, with text of its
        own and not cut by the model's token limit, finished it. It keeps the
        name it was announced under (``aggregator/step-N``): its start and end
        events must name the same call, and it could not be known to be the
        last before it ended. No note says so: a note marks an answer degraded.
        """
        if step.error is None and not step.added.strip():
            msg = f"{step.node.name}: the step added nothing to the answer"
            step.error = BadResponseError(msg)
        steps.finished = step.error is None and not step.capped and not was_cut(step.raw)
        return self.stepped(step, steps)["error"] is None

    def partial_step(
        self, state: MoAState, config: RunnableConfig, board: Board, steps: Steps
    ) -> bool:
        """One step on unfinished proposals (sync); whether more may follow."""
        step = self.begin_step(self.step_state(state, board, steps), config, steps, last=False)
        self.run_step(step, steps)
        return self.after_partial(step, steps)

    async def apartial_step(
        self, state: MoAState, config: RunnableConfig, board: Board, steps: Steps
    ) -> bool:
        """``partial_step``, for async runs."""
        step = await self.abegin_step(
            self.step_state(state, board, steps), config, steps, last=False
        )
        await self.arun_step(step, steps)
        return self.after_partial(step, steps)

    def joined(self, state: MoAState, board: Board) -> tuple[MoAState, dict]:
        """The complete proposals as the join passes them on, and its update.

        Raises:
            LayerFailedError: fewer than ``min_proposers`` answered.
        """
        records = [p.record for p in board.proposals if p.record is not None]
        update, _ = self.join.joined({**state, "calls": records})
        return {**state, **update}, {"calls": records, "dropped": update["dropped"]}

    def answer(self, steps: Steps, base: dict) -> dict:
        """The update with the answer the steps wrote, and every call."""
        answer = AIMessage(content=steps.written)
        calls = [*base["calls"], *steps.calls]
        return {**base, "calls": calls, "answer": answer, "messages": [answer]}

    def ended(self, step: Step, steps: Steps, full: MoAState, base: dict) -> dict:
        """The update after the last step (recorded here).

        Raises:
            AggregatorFailedError: the last step failed with part of the answer out
                (``Final.last_resort``: no other model may finish it).
        """
        self.stepped(step, steps)
        if step.error is not None:
            failed = [c for c in steps.calls if c["error"] is not None]
            return self.last_resort(full, step.config, failed, streamed=True)
        return self.answer(steps, base)

    def last_step(
        self, state: MoAState, config: RunnableConfig, board: Board, steps: Steps
    ) -> dict:
        """With every proposal complete: finish the answer, or write it as MoA would."""
        full, base = self.joined(state, board)
        if not steps.written:
            # Nothing went out yet: the plain aggregator, with its fallbacks.
            update = plain_aggregator(self)(full, config)
            return {**update, **base, "calls": [*base["calls"], *steps.calls, *update["calls"]]}
        step = self.begin_step(full, config, steps, last=True)
        self.run_step(step, steps)
        return self.ended(step, steps, full, base)

    async def alast_step(
        self, state: MoAState, config: RunnableConfig, board: Board, steps: Steps
    ) -> dict:
        """``last_step``, for async runs."""
        full, base = self.joined(state, board)
        if not steps.written:
            update = await plain_aggregator(self).acall(full, config)
            return {**update, **base, "calls": [*base["calls"], *steps.calls, *update["calls"]]}
        step = await self.abegin_step(full, config, steps, last=True)
        await self.arun_step(step, steps)
        return self.ended(step, steps, full, base)

    def finished_early(self, state: MoAState, config: RunnableConfig, board: Board,
                       steps: Steps) -> dict:  # fmt: skip
        """The update when a partial step finished the answer: the proposals are stopped."""
        self.stop_proposals(board, state, config)
        records = [p.record for p in board.proposals if p.record is not None]
        return self.answer(steps, {"calls": records})

    # --- the node -----------------------------------------------------------------------

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node (sync): each proposal streamed in a thread, the steps here."""
        if self.plain(state):
            return plain_aggregator(self)(state, config)
        board = Board([Proposal(p, p.started(state, config)) for p in self.proposers])
        for proposal in board.proposals:
            # Daemon threads: a stopped proposal ends at its next chunk, unwaited for.
            context = contextvars.copy_context()
            args = (self.propose, board, proposal, state, config)
            threading.Thread(target=context.run, args=args, daemon=True).start()
        steps = Steps(read=[0] * len(board.proposals))
        early: dict | None = None
        try:
            while self.partial(state, steps):
                board.wait(lambda: board.finished() or board.ready(steps.read, self.step_tokens))
                self.quorum(board)
                if board.finished() or not self.partial_step(state, config, board, steps):
                    break
                if steps.finished:
                    early = self.finished_early(state, config, board, steps)
                    break
            if early is None:
                board.wait(board.finished)
        except BaseException:
            board.abandon()
            raise
        finally:
            board.halted.set()
        with board.condition:
            faults = list(board.faults)
        if faults:
            # An answer built without that proposal's record would hide the fault.
            raise faults[0]
        return early if early is not None else self.last_step(state, config, board, steps)

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node (async): each proposal streamed in a task, the steps here."""
        if self.plain(state):
            return await plain_aggregator(self).acall(state, config)
        board = Board(
            [Proposal(p, p.started(state, config)) for p in self.proposers], is_async=True
        )
        tasks = [
            asyncio.create_task(self.apropose(board, p, state, config)) for p in board.proposals
        ]
        steps = Steps(read=[0] * len(board.proposals))
        early: dict | None = None
        failed = True
        try:
            while self.partial(state, steps):
                await board.await_(
                    lambda: board.finished() or board.ready(steps.read, self.step_tokens)
                )
                self.quorum(board)
                if board.finished() or not await self.apartial_step(state, config, board, steps):
                    break
                if steps.finished:
                    early = self.finished_early(state, config, board, steps)
                    break
            if early is None:
                await board.await_(board.finished)
            failed = False
        finally:
            board.halted.set()
            for task in tasks:
                task.cancel()
            broken = await _reap(tasks, logged=failed)
        if broken:
            # A proposal's task may only end by cancellation: anything else is a fault in
            # recording it, and an answer built without its record would hide that.
            raise broken[0]
        return early if early is not None else await self.alast_step(state, config, board, steps)


async def _reap(tasks: list[asyncio.Task[None]], *, logged: bool) -> list[BaseException]:
    """Wait for the proposals' tasks; what ended them other than cancellation.

    With ``logged`` (the node is failing already, and that error goes up) they
    are logged rather than returned.
    """
    results = await asyncio.gather(*tasks, return_exceptions=True)
    # A cancelled proposal's task ends in CancelledError: it was stopped, not failed.
    broken = [
        r
        for r in results
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
    ]
    if logged:
        for error in broken:
            logger.error("a proposal's task failed", exc_info=error)
        return []
    return broken


def plan(strategy: Staircase) -> Plan:
    """The aggregator runs the last proposer layer itself, answering as it goes."""
    return Plan(
        final=partial(
            StaircaseAggregator,
            step_tokens=strategy.step_tokens,
            max_partial_steps=strategy.max_partial_steps,
        ),
        inner_layers=1,
        no_stop_before_final=(
            "the staircase strategy runs its last proposer layer inside the aggregator "
            "node, so a stop before it comes before that layer's references exist; review "
            "references with another strategy"
        ),
    )
