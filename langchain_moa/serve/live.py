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

``moa_answer`` or ``moa_error`` is always the last.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage

from langchain_moa.chat_models import ChatMoA
from langchain_moa.graph.state import ANSWER_CHUNK, CALL_END, CALL_ERROR, CALL_START

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

_DONE = object()


class _CallEvents(BaseCallbackHandler):
    """Puts the graph's call events on the queue the live stream reads."""

    def __init__(self, queue: asyncio.Queue[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.queue = queue
        self.loop = loop

    def on_custom_event(self, name: str, data: Any, **_: Any) -> None:
        if name not in CALL_EVENTS:
            return
        event = {"event": name, **data}
        # The graph's nodes emit from the event loop's thread, in order with
        # the answer's chunks; a synchronous run's thread pool would not.
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.queue.put_nowait(event)
        else:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


async def live_events(
    moa: ChatMoA, messages: list[BaseMessage], **options: Any
) -> AsyncGenerator[dict[str, Any]]:
    """Answer ``messages`` with ``moa``, yielding its layer events as they happen.

    Args:
        moa: The stack.
        messages: The conversation, ending with the question.
        **options: The final answer's call options (``stop``, ``max_tokens``...).

    Yields:
        The events described in this module's docstring, ``moa_answer`` last.

    Raises:
        Exception: whatever the stack raised (``LayerFailedError``...), after
            every event that came before it.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    handler = _CallEvents(queue, loop)

    async def answer() -> None:
        try:
            async for chunk in moa.astream(messages, config={"callbacks": [handler]}, **options):
                if chunk.text:
                    queue.put_nowait({"event": ANSWER_CHUNK, "text": chunk.text})
                if chunk.response_metadata.get("accounting") is not None:
                    metadata = chunk.response_metadata
                    queue.put_nowait(
                        {"event": ANSWER, "metadata": {k: metadata.get(k) for k in METADATA_KEYS}}
                    )
        except Exception as error:  # noqa: BLE001 - raised to the reader below, in order
            queue.put_nowait(error)
        queue.put_nowait(_DONE)

    task = asyncio.create_task(answer())
    try:
        while (item := await queue.get()) is not _DONE:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        # A reader that left (the page closed) cancels the stack's calls.
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
