"""Chat models for OpenAI-compatible servers other than OpenAI's (vLLM, llama.cpp, Together)."""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import Sequence
from functools import cache
from http import HTTPStatus
from typing import Any, TypeVar

import httpx
from langchain_openai import ChatOpenAI

from langchain_moa.accounting import redact

NO_KEY = "no-key-needed"
"""Sent to a server of the user's own that was given no key: ChatOpenAI insists
on one, and a real key must never go to a server it was not issued for."""


M = TypeVar("M", bound=ChatOpenAI)


def openai_compatible_model(
    model: str,
    *,
    base_url: str,
    api_key: str,
    model_class: type[M] = ChatOpenAI,  # type: ignore[assignment]  # the bound's own default
    **kwargs: Any,
) -> M:
    """A ``ChatOpenAI`` for a model on an OpenAI-compatible server other than OpenAI's.

    ``max_tokens`` travels as the request's ``max_tokens``: langchain-openai
    1.x sends it as ``max_completion_tokens``, which some servers ignore
    (llama.cpp's generates until its context is full). Token usage is asked
    for on streamed answers too, so that a stack's accounting is complete.
    Unless ``http_client``/``http_async_client`` are given, a credential the
    server echoes in an error body is masked before anything records it.

    Args:
        model: The model id the server knows.
        base_url: The endpoint, ending in ``/v1``.
        api_key: The server's key.
        model_class: ``ChatOpenAI`` or a subclass of it for the server.
        **kwargs: Other ``ChatOpenAI`` settings (``temperature``, ``seed``...).
    """
    if (max_tokens := kwargs.pop("max_tokens", None)) is not None:
        kwargs["extra_body"] = {**(kwargs.get("extra_body") or {}), "max_tokens": max_tokens}
    kwargs.setdefault("stream_usage", True)
    if "http_client" not in kwargs:
        kwargs["http_client"] = httpx.Client(transport=RedactingTransport())
    if "http_async_client" not in kwargs:
        kwargs["http_async_client"] = httpx.AsyncClient(transport=AsyncRedactingTransport())
    return model_class(model=model, base_url=base_url, api_key=api_key, **kwargs)


def max_tokens_option(models: Sequence[object], limit: int) -> dict[str, Any]:
    """A call's ``max_tokens`` for ``models`` (one call, then its fallbacks), where they read it.

    A model made by ``openai_compatible_model`` carries its limit in
    ``extra_body``, so a call's limit goes there too; ``extra_body`` is replaced
    whole by a call's (langchain-openai merges no call option into the
    model's), so only when every model has the same one. Other models take the
    plain ``max_tokens``.
    """
    bodies = [getattr(model, "extra_body", None) for model in models]
    first = bodies[0] if bodies else None
    if isinstance(first, dict) and "max_tokens" in first and all(b == first for b in bodies):
        return {"extra_body": {**first, "max_tokens": limit}}
    return {"max_tokens": limit}


@cache
def _ssl_context() -> ssl.SSLContext:
    """One default TLS context for every transport: httpx makes one per transport (~50 ms)."""
    return httpx.create_ssl_context()


def _redacted(response: httpx.Response, request: httpx.Request, body: bytes) -> httpx.Response:
    """An error ``response`` with credentials masked in its body."""
    text = body.decode("utf-8", errors="replace")
    clean = redact(text)
    if clean == text:
        return response
    # The body was read (and decoded): its length and encoding headers no longer apply.
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in {"content-length", "content-encoding", "transfer-encoding"}
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=clean.encode(), request=request
    )


class RedactingTransport(httpx.BaseTransport):
    """Masks credentials a server echoes in an error body, before any exception holds them.

    langchain-core reports a failed call's exception to every callback handler
    (a tracer stores its message) before our nodes catch it; some servers
    put the key they were sent in that message.
    """

    def __init__(self) -> None:
        """Send requests through httpx's own transport."""
        self._inner = httpx.HTTPTransport(verify=_ssl_context())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; mask credentials in an error's body."""
        response = self._inner.handle_request(request)
        if response.status_code < HTTPStatus.BAD_REQUEST:
            return response
        return _redacted(response, request, response.read())

    def close(self) -> None:
        """Close the connections."""
        self._inner.close()


class AsyncRedactingTransport(httpx.AsyncBaseTransport):
    """``RedactingTransport`` for async clients, with a connection pool per event loop.

    httpx's pooled connections belong to the loop that opened them, and a
    chat model outlives loops (each ``asyncio.run`` is a new one).
    """

    def __init__(self) -> None:
        """No pool yet: each event loop gets its own on its first request."""
        self._pools: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport
        ] = weakref.WeakKeyDictionary()

    def pool(self) -> httpx.AsyncHTTPTransport:
        """The running loop's connection pool."""
        loop = asyncio.get_running_loop()
        if loop not in self._pools:
            self._pools[loop] = httpx.AsyncHTTPTransport(verify=_ssl_context())
        return self._pools[loop]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; mask credentials in an error's body."""
        response = await self.pool().handle_async_request(request)
        if response.status_code < HTTPStatus.BAD_REQUEST:
            return response
        return _redacted(response, request, await response.aread())

    async def aclose(self) -> None:
        """Close the running loop's connections."""
        loop = asyncio.get_running_loop()
        if (pool := self._pools.pop(loop, None)) is not None:
            await pool.aclose()
