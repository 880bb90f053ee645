"""What every route answers with: OpenAI's errors, and server-sent event streams.

Starlette's, shared by ``langchain_moa.serve.app`` (the app and its plain
routes), ``langchain_moa.serve.chat`` and ``langchain_moa.serve.responses``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import openai
from langchain_core.messages import AIMessageChunk

from langchain_moa.accounting import BadResponseError, CallTimeoutError, redact
from langchain_moa.graph import AggregatorFailedError, LayerFailedError
from langchain_moa.serve import EXTRA_HINT, ServeExtraMissingError
from langchain_moa.serve.asking import BadConversationError
from langchain_moa.serve.openai_format import error_body
from langchain_moa.serve.structured import StructuredAnswerError

try:
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.types import Receive, Scope, Send
except ImportError as error:  # pragma: no cover - the serve extra is in the test set-up
    msg = f"moa serve needs starlette and uvicorn: {EXTRA_HINT}"
    raise ServeExtraMissingError(msg) from error

__all__ = [
    "ApiError",
    "ClosingStream",
    "JSONResponse",
    "Response",
    "chunks",
    "close",
    "failure",
    "opened",
    "sse",
    "streamed",
]

logger = logging.getLogger(__name__)

UNAVAILABLE = (
    LayerFailedError,
    AggregatorFailedError,
    CallTimeoutError,
    BadResponseError,
    openai.APIError,
    httpx.HTTPError,
    ConnectionError,
    TimeoutError,
)
"""Failures of the providers, not of the request: a 503."""


class ApiError(Exception):
    """A request's failure, as the status and OpenAI error object it is answered with."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Describe the error answer."""
        super().__init__(message)
        self.status = status
        self.body = error_body(message, kind=kind, param=param, code=code)
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        """The error answer."""
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def failure(error: Exception) -> ApiError:
    """What a request's failure is answered with; a stack's failure is logged here."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, BadConversationError):
        return ApiError(400, str(error), param=error.param)
    if isinstance(error, StructuredAnswerError):
        # The stack answered, but not as asked: sent as a failure, never as the answer.
        message = redact(f"The stack's answer is not the JSON asked for: {error}")
        logger.warning("%s", message)
        return ApiError(503, message, kind="server_error", code="invalid_structured_answer")
    if isinstance(error, UNAVAILABLE):
        # The message names each provider's failure; keys they echo are masked.
        message = redact(f"The stack's providers failed: {type(error).__name__}: {error}")
        logger.warning("%s", message)
        return ApiError(503, message, kind="server_error", code="providers_unavailable")
    logger.error("the request failed", exc_info=error)
    return ApiError(500, "The server failed to answer (the error is logged)", kind="server_error")


def sse(data: Mapping[str, Any] | str, *, event: str | None = None) -> str:
    """One server-sent event (``event:`` named, as the Responses API's are, when given)."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    named = f"event: {event}\n" if event else ""
    return f"{named}data: {payload}\n\n"


class ClosingStream(StreamingResponse):
    """A streamed answer that runs ``on_close`` however it ends, even never started."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], Any]) -> None:
        """Stream ``content`` as server-sent events."""
        super().__init__(
            content,
            media_type="text/event-stream",
            # Proxies (nginx) must pass each event on as it comes.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the stream, then close it and run ``on_close``."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A client that left stops the events where they were: close them
            # now, not whenever the garbage collector finds them.
            await close(self.body_iterator)
            await self._on_close()


async def opened(stream: AsyncIterator[Any]) -> Any:
    """A stream's first chunk (None if it has none), the stream closed if that fails.

    Awaited before the response starts: the proposers' layers run then, and
    their failure is a status code a client can act on (503), not an event in
    a stream that began with 200.
    """
    try:
        return await anext(stream, None)
    except BaseException:
        await close(stream)
        raise


def streamed(
    events: AsyncIterator[str], stream: AsyncIterator[Any], give_back: Callable[[], None]
) -> ClosingStream:
    """``events`` as the response; when it ends, the slot is given back and ``stream`` closed."""

    async def closed() -> None:
        give_back()
        await close(stream)

    return ClosingStream(events, closed)


async def chunks(stream: AsyncIterator[Any], first: Any) -> AsyncIterator[AIMessageChunk]:
    """The answer's chunks: ``first``, then the rest of ``stream``."""
    part = first
    while part is not None:
        if isinstance(part, AIMessageChunk):
            yield part
        part = await anext(stream, None)


async def close(stream: AsyncIterable[Any]) -> None:
    """Close an async generator (a no-op for other iterables)."""
    closing = getattr(stream, "aclose", None)
    if closing is not None:
        await closing()
