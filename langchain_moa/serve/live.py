"""One answer's layer events, as the live page (``GET /``) reads them from ``POST /live``.

Nothing here is computed: the events are the ones the graph emits for every
UI (``CALL_START``, ``CALL_END`` and ``CALL_ERROR`` with the calls' own
records, see ``langchain_moa.graph.state``), the answer's tokens as
``ChatMoA.astream`` yields them, and at the end the answer's own
``response_metadata`` (its ``accounting``: calls, tokens, cost, critical
path and end to end). Each is one JSON object with an ``event`` field::

    {"event": "moa_call_start", "node": "layer1/smollm2", "layer": 1, "model": "..."}
    {"event": "moa_call_end", ...the call's ModelCall record...}
    {"event": "moa_call_error", ...the record, "error" and "reason" set...}
    {"event": "moa_answer_chunk", "text": "..."}
    {"event": "moa_answer", "metadata": {"accounting": ..., "degradations": [...], ...}}
    {"event": "moa_error", "error": {...OpenAI's error object...}}
    {"event": "moa_keepalive"}   (after 15 s without any other)

``moa_answer`` or ``moa_error`` is always the last.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import anyio
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage

from langchain_moa.chat_models import ChatMoA
from langchain_moa.graph.state import (
    ANSWER_CHUNK,
    CALL_END,
    CALL_ERROR,
    CALL_START,
    is_answer_node,
)

ANSWER = "moa_answer"
"""The last event of an answered question: the answer's metadata."""
ERROR = "moa_error"
"""The last event of a question that could not be answered."""

CALL_EVENTS = frozenset({CALL_START, CALL_END, CALL_ERROR})

METADATA_KEYS = (
    "accounting",
    "degradations",
    "finish_reason",
    "strategy",
    "early_stop",
    "ranking",
    "latency_s",
)
"""What of the answer's ``response_metadata`` the page shows (``layers`` it has had
call by call already)."""

KEEPALIVE = "moa_keepalive"
"""Sent when nothing else was for ``keepalive_s``: a layer can run for minutes, and
proxies close a stream that stays silent that long (``/live`` sends it as an SSE comment)."""

KEEPALIVE_S = 15.0

_DONE = object()


class _CallEvents(BaseCallbackHandler):
    """Puts the graph's call events on the queue the live stream reads."""

    # Run here, not in the event loop's thread pool: the nodes dispatch their
    # events synchronously on the loop's thread, in order with the answer's chunks.
    run_inline = True
    # Custom events only: every other callback of every model would be a no-op.
    ignore_llm = ignore_chain = ignore_agent = ignore_retriever = True
    ignore_chat_model = ignore_retry = True

    def __init__(self, queue: asyncio.Queue[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.queue = queue
        self.loop = loop

    def on_custom_event(self, name: str, data: Any, **_: Any) -> None:
        if name not in CALL_EVENTS:
            return
        event = {"event": name, **data}
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.queue.put_nowait(event)
        else:
            # A model's synchronous callbacks may run in another thread.
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


async def _answer(
    moa: ChatMoA, messages: list[BaseMessage], handler: _CallEvents, options: dict[str, Any]
) -> None:
    """Run the stack, its chunks and its end (or its error) onto the handler's queue."""
    queue = handler.queue
    try:
        async for chunk in moa.astream(messages, config={"callbacks": [handler]}, **options):
            if chunk.text:
                queue.put_nowait({"event": ANSWER_CHUNK, "text": chunk.text})
            if chunk.response_metadata.get("accounting") is not None:
                metadata = chunk.response_metadata
                queue.put_nowait(
                    {"event": ANSWER, "metadata": {k: metadata.get(k) for k in METADATA_KEYS}}
                )
    except Exception as error:  # noqa: BLE001 - raised to the reader, in order
        queue.put_nowait(error)
    finally:
        queue.put_nowait(_DONE)


class _AnswerLast:
    """Holds the answer's own call records back until its last chunk is out."""

    def __init__(self) -> None:
        self.held: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The events to send now, ``event`` among them unless it is held."""
        if event["event"] in {CALL_END, CALL_ERROR} and is_answer_node(event["node"]):
            self.held.append(event)
            return []
        if event["event"] == ANSWER:
            return [*self.release(), event]
        return [event]

    def release(self) -> list[dict[str, Any]]:
        """Every held event, in the order they came."""
        held, self.held = self.held, []
        return held


async def live_events(
    moa: ChatMoA,
    messages: list[BaseMessage],
    *,
    keepalive_s: float = KEEPALIVE_S,
    **options: Any,
) -> AsyncGenerator[dict[str, Any]]:
    """Answer ``messages`` with ``moa``, yielding its layer events as they happen.

    The answer's own call records (the aggregator's, its fallbacks' or steps')
    come after its last chunk: the graph emits a record when its call returns,
    which can be before the call's last chunks have come through the stream.

    Args:
        moa: The stack.
        messages: The conversation, ending with the question.
        keepalive_s: Seconds of silence after which a ``moa_keepalive`` event is sent.
        **options: The final answer's call options (``stop``, ``max_tokens``...).

    Yields:
        The events described in this module's docstring, ``moa_answer`` last.

    Raises:
        Exception: whatever the stack raised (``LayerFailedError``...), after
            every event that came before it.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()
    handler = _CallEvents(queue, asyncio.get_running_loop())
    task = asyncio.create_task(_answer(moa, messages, handler, options))
    order = _AnswerLast()
    try:
        while True:
            try:
                # A timeout scope, not wait_for: no task made per event (per token).
                async with asyncio.timeout(keepalive_s):
                    item = await queue.get()
            except TimeoutError:
                yield {"event": KEEPALIVE}
                continue
            if item is _DONE:
                return
            if isinstance(item, Exception):
                for event in order.release():
                    yield event
                raise item
            for event in order(item):
                yield event
    finally:
        # A reader that left (the page closed) cancels the stack's calls, and
        # waits for the graph to cancel its own: Starlette stops a stream whose
        # client left with an anyio cancel scope, which cancels every await
        # again and again (anyio's level cancellation); unshielded, this wait
        # would cancel the graph's clean-up and leave its calls running.
        task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(task, return_exceptions=True)
