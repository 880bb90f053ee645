"""MoA stacks served as OpenAI's chat completions API (Starlette), and its uvicorn runner.

``create_app`` serves each stack under a model id::

    app = create_app({"local": ChatMoA, "mine": lambda: ChatMoA.from_config("mine.yaml")})

Routes: ``POST /v1/chat/completions`` (plain and streamed), ``GET /v1/models``,
``GET /health`` (no key needed, for load balancers), and the live page: ``GET /``
(plain HTML, CSS and JavaScript from ``langchain_moa/serve/page``, no key needed:
it holds nothing but code) and ``POST /live``, one answer's layer events as
server-sent events (see ``langchain_moa.serve.live``). Requests and
answers are OpenAI's (see ``langchain_moa.serve.openai_format`` for what is
honoured and what refused), and so are errors: ``{"error": {"message",
"type", "param", "code"}}`` with 400, 401, 404, 413, 429, 503 or 500.

Nothing is kept between requests but the stacks themselves (each built on
its first request and shared: ``ChatMoA`` runs concurrent requests), so
instances can scale out behind a load balancer. The concurrency limit is
each instance's own; past it a request is refused with 429 at once, never
queued, so that a balancer can send it elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Mapping,
)
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from pydantic import ValidationError

from langchain_moa.accounting import BadResponseError, CallTimeoutError, redact
from langchain_moa.chat_models import ChatMoA
from langchain_moa.graph import AggregatorFailedError, LayerFailedError
from langchain_moa.graph.state import check_conversation
from langchain_moa.serve import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_MESSAGES,
    EXTRA_HINT,
    ServeExtraMissingError,
)
from langchain_moa.serve.live import ERROR, KEEPALIVE, live_events
from langchain_moa.serve.openai_format import (
    ChatCompletionRequest,
    chunk,
    completion,
    describe_validation,
    error_body,
    finish_reason,
    model_card,
    usage,
)
from langchain_moa.sockets import tcp_listener
from langchain_moa.stacks import LOCAL_MOA, PRESETS, StackError

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.datastructures import Headers
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.types import ASGIApp, Receive, Scope, Send
except ImportError as error:  # pragma: no cover - the serve extra is in the test set-up
    msg = f"moa serve needs starlette and uvicorn: {EXTRA_HINT}"
    raise ServeExtraMissingError(msg) from error

logger = logging.getLogger(__name__)

StackSource = ChatMoA | Callable[[], ChatMoA]
"""A stack to serve: built already, or how to build it (on its first request)."""

PAGE = Path(__file__).with_name("page")
"""The live page's files, shipped in the package: nothing is built or downloaded."""

PAGE_HEADERS = {
    # Asked again each time (a 304 if unchanged): after an upgrade, a browser
    # must not pair the new page with an old script.
    "Cache-Control": "no-cache",
    # Nothing but this server's own files; nothing may frame the page.
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}

JSON_TYPE = "application/json"

RETRY_AFTER_S = 1
"""What a 429 tells the client to wait: a MoA request frees its slot in seconds."""

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


def default_stacks() -> dict[str, StackSource]:
    """Every preset by its name, ``local`` (the embedded stack) first; none built yet."""
    names = [LOCAL_MOA, *(name for name in PRESETS if name != LOCAL_MOA)]
    return {name: partial(ChatMoA, preset=name) for name in names}


class ServedStacks:
    """The stacks by model id, each built on its first request and kept for the next."""

    def __init__(self, stacks: Mapping[str, StackSource]) -> None:
        """Take the stacks; nothing is built here."""
        if not stacks:
            msg = "no stack to serve"
            raise ValueError(msg)
        self._names = list(stacks)
        self._built = {name: s for name, s in stacks.items() if isinstance(s, ChatMoA)}
        self._builders = {name: s for name, s in stacks.items() if not isinstance(s, ChatMoA)}
        self._locks = {name: asyncio.Lock() for name in self._builders}

    @property
    def names(self) -> list[str]:
        """The model ids served."""
        return list(self._names)

    async def get(self, name: str) -> ChatMoA:
        """The stack served as ``name``, built now if this is its first request.

        Raises:
            ApiError: 404 if no stack has that name; 503 if it cannot be built
                (a key's variable is not set, an extra is missing).
        """
        if name not in self._names:
            served = ", ".join(self.names)
            raise ApiError(
                404,
                f"The model {name!r} does not exist: this server serves {served}",
                param="model",
                code="model_not_found",
            )
        if (built := self._built.get(name)) is not None:
            return built
        async with self._locks[name]:
            if (built := self._built.get(name)) is not None:
                return built
            try:
                # Off the event loop: building imports provider packages and compiles a graph.
                built = await asyncio.to_thread(self._builders[name])
            except (StackError, ImportError, FileNotFoundError) as error:
                # ImportError: a provider's package or an extra (LocalExtraMissingError) missing.
                # Not kept: the next request tries again (the operator may fix it).
                message = redact(f"model {name!r} cannot be served: {error}")
                logger.warning("%s", message)
                raise ApiError(
                    503, message, kind="server_error", code="model_unavailable"
                ) from None
            self._built[name] = built
            return built


class _Slots:
    """How many completions run now, against the limit; no queue past it."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            msg = f"max_concurrency must be at least 1, got {limit}"
            raise ValueError(msg)
        self.limit = limit
        self.taken = 0

    def take(self) -> None:
        """Take a slot (the event loop's one thread: no lock needed).

        Raises:
            ApiError: 429 when every slot is taken.
        """
        if self.taken >= self.limit:
            raise ApiError(
                429,
                f"This server runs at most {self.limit} requests at once: retry shortly "
                "or send the request to another instance",
                kind="requests",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.taken += 1

    def give_back(self) -> None:
        """Free a slot."""
        self.taken -= 1


class _ClosingStream(StreamingResponse):
    """A streamed answer that runs ``on_close`` however it ends, even never started."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], Any]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            # Proxies (nginx) must pass each event on as it comes.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A client that left stops the events where they were: close them
            # now, not whenever the garbage collector finds them.
            await _close(self.body_iterator)
            await self._on_close()


def _event(data: Mapping[str, Any] | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n"


def _failure(error: Exception) -> ApiError:
    """What a stack's failure is answered with; it is logged here."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, UNAVAILABLE):
        # The message names each provider's failure; keys they echo are masked.
        message = redact(f"The stack's providers failed: {type(error).__name__}: {error}")
        logger.warning("%s", message)
        return ApiError(503, message, kind="server_error", code="providers_unavailable")
    logger.error("chat completion failed", exc_info=error)
    return ApiError(500, "The server failed to answer (the error is logged)", kind="server_error")


def create_app(
    stacks: Mapping[str, StackSource] | None = None,
    *,
    api_key: str | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    hosts: Collection[str] | None = None,
) -> Starlette:
    """The OpenAI-compatible app serving ``stacks`` by model id.

    Args:
        stacks: Model id to a ``ChatMoA`` or a function that builds one (on
            its first request, once). By default ``default_stacks()``: the
            embedded stack as ``local`` and the paper's presets, which need
            their keys in the environment (a request without them is a 503).
        api_key: The bearer token every ``/v1`` request must send; None
            serves without one.
        max_concurrency: Completions running at once; past it, 429.
        max_body_bytes: The largest request body; past it, 413.
        max_messages: The most messages of one request; past it, 400.
        hosts: The host names a request may address (its ``Host`` header),
            any if None; past them, 400. ``moa serve`` on a loopback address
            takes loopback names only (``LOOPBACK_HOSTS``): a site whose name
            was made to point at 127.0.0.1 (DNS rebinding) is then refused.

    Raises:
        ValueError: ``stacks`` is empty or a limit is below 1.
    """
    api = _Api(
        ServedStacks(default_stacks() if stacks is None else stacks),
        api_key=api_key,
        max_concurrency=max_concurrency,
        max_body_bytes=max_body_bytes,
        max_messages=max_messages,
    )
    return Starlette(
        routes=[
            Route("/v1/chat/completions", api.completions, methods=["POST"]),
            Route("/v1/models", api.models, methods=["GET"]),
            Route("/health", api.health, methods=["GET"]),
            Route("/live", api.live, methods=["POST"]),
            Route("/", api.page, methods=["GET"]),
            Mount("/page", _PageFiles(directory=PAGE), name="page"),
        ],
        exception_handlers={HTTPException: _http_error},
        middleware=[] if hosts is None else [Middleware(_HostsOnly, hosts=frozenset(hosts))],
    )


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""The names of this machine a browser on it uses."""


class _HostsOnly:
    """Answers only requests that address one of ``hosts``.

    Not Starlette's ``TrustedHostMiddleware``: it reads the name as the text
    before the first colon, which turns ``[::1]:8000`` into ``[``.
    """

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            try:
                name = urlsplit(f"//{host}").hostname
            except ValueError:
                name = None
            if name not in self.hosts:
                error = ApiError(400, f"This server does not answer for the host {host!r}")
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _PageFiles(StaticFiles):
    """The page's script and style, with the page's headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(PAGE_HEADERS)
        return response


async def _http_error(_request: Request, error: Exception) -> Response:
    # Unknown routes and methods get OpenAI's error shape too.
    status = error.status_code if isinstance(error, HTTPException) else 500
    detail = error.detail if isinstance(error, HTTPException) else "internal error"
    return JSONResponse(error_body(str(detail)), status_code=status)


class _Api:
    """The routes' handlers, over the stacks and the limits."""

    def __init__(
        self,
        served: ServedStacks,
        *,
        api_key: str | None,
        max_concurrency: int,
        max_body_bytes: int,
        max_messages: int,
    ) -> None:
        if max_body_bytes < 1 or max_messages < 1:
            msg = "max_body_bytes and max_messages must be at least 1"
            raise ValueError(msg)
        self.served = served
        self.slots = _Slots(max_concurrency)
        self.max_body_bytes = max_body_bytes
        self.max_messages = max_messages
        self._expected = api_key.encode() if api_key else None
        self.created = int(time.time())

    def authorize(self, request: Request) -> None:
        """Check the bearer token, if one is required.

        Raises:
            ApiError: 401, the token missing or wrong.
        """
        if self._expected is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "No API key: send it as 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )
        # Constant time; the token is neither logged nor echoed back.
        if not secrets.compare_digest(token.strip().encode(), self._expected):
            raise ApiError(401, "Incorrect API key provided", code="invalid_api_key")

    async def read_json(self, request: Request) -> Any:
        """The body, parsed.

        Raises:
            ApiError: 413 past the size limit, 400 if it is not JSON.
        """
        too_large = ApiError(
            413,
            f"The request body is larger than {self.max_body_bytes} bytes",
            code="request_too_large",
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise too_large
        body = bytearray()
        # Counted as it arrives: a chunked body declares no length.
        async for part in request.stream():
            body += part
            if len(body) > self.max_body_bytes:
                raise too_large
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ApiError(400, f"The request body is not valid JSON: {error}") from None
        except RecursionError:
            # json.loads recurses per nesting level: "[[[[..." within the size limit.
            raise ApiError(400, "The request body is nested too deeply") from None

    def parse(self, payload: Any) -> ChatCompletionRequest:
        """The request, checked.

        Raises:
            ApiError: 400 naming the first bad field.
        """
        try:
            asked = ChatCompletionRequest.model_validate(payload)
        except ValidationError as error:
            message, param = describe_validation(error)
            raise ApiError(400, message, param=param) from None
        if len(asked.messages) > self.max_messages:
            raise ApiError(
                400,
                f"messages: {len(asked.messages)} messages, at most {self.max_messages} are taken",
                param="messages",
            )
        return asked

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``: every stack served."""
        try:
            self.authorize(request)
        except ApiError as error:
            return error.response()
        cards = [model_card(name, self.created) for name in self.served.names]
        return JSONResponse({"object": "list", "data": cards})

    async def health(self, _request: Request) -> Response:
        """``GET /health``: the process answers (no key needed)."""
        return JSONResponse({"status": "ok"})

    async def completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``, plain or streamed."""
        try:
            self.authorize(request)
            _refuse_other_sites(request)
            self.slots.take()
        except ApiError as error:
            return error.response()
        handed_over = False
        try:
            asked = self.parse(await self.read_json(request))
            moa = await self.served.get(asked.model)
            messages = _conversation(asked)
            options = _call_options(moa, asked)
            if asked.stream:
                response = await _streamed(moa, asked, messages, options, self.slots.give_back)
                # The stream gives the slot back when it ends.
                handed_over = True
                return response
            answer = await moa.ainvoke(messages, **options)
            body = completion(
                id_=_completion_id(),
                model=asked.model,
                created=int(time.time()),
                text=answer.text,
                metadata=answer.usage_metadata if isinstance(answer, AIMessage) else None,
                finish=finish_reason(answer),
            )
            return JSONResponse(body)
        except Exception as error:  # noqa: BLE001 - every failure is answered as OpenAI's
            return _failure(error).response()
        finally:
            if not handed_over:
                self.slots.give_back()

    async def page(self, _request: Request) -> Response:
        """``GET /``: the live page (its script asks ``/v1/models`` and ``/live``)."""
        return FileResponse(PAGE / "index.html", headers=PAGE_HEADERS)

    async def live(self, request: Request) -> Response:
        """``POST /live``: one answer's layer events, as server-sent events.

        The body is a chat completion request (``model``, ``messages``,
        ``max_tokens``...), checked as ``/v1/chat/completions`` checks it,
        under the same key and the same concurrency limit. It must be sent as
        JSON: a form on another site can post text, never JSON, without the
        browser asking this server first.
        """
        try:
            self.authorize(request)
            _refuse_other_sites(request)
            _require_json(request)
            self.slots.take()
        except ApiError as error:
            return error.response()
        handed_over = False

        async def close() -> None:
            self.slots.give_back()

        try:
            asked = self.parse(await self.read_json(request))
            moa = await self.served.get(asked.model)
            events = live_events(moa, _conversation(asked), **_call_options(moa, asked))
        except Exception as error:  # noqa: BLE001 - every failure is answered as OpenAI's
            return _failure(error).response()
        else:
            # The stream gives the slot back when it ends.
            handed_over = True
            return _ClosingStream(_live_stream(events), close)
        finally:
            if not handed_over:
                self.slots.give_back()


def _require_json(request: Request) -> None:
    """Refuse a body that is not sent as JSON.

    Raises:
        ApiError: 415, another content type.
    """
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != JSON_TYPE:
        raise ApiError(415, f"Send the request as {JSON_TYPE}", code="unsupported_media_type")


def _refuse_other_sites(request: Request) -> None:
    """Refuse a browser's request from a page of another site.

    Such a page cannot read the answer (no CORS headers are sent), but without
    this it could still make the server spend the stacks' keys.

    Raises:
        ApiError: 403, the request's ``Origin`` is not this server.
    """
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise ApiError(
            403, "Requests from pages of other sites are refused", code="cross_origin_request"
        )


def _conversation(asked: ChatCompletionRequest) -> list[BaseMessage]:
    """The request's messages, refused with 400 when there is nothing to answer."""
    messages = asked.langchain_messages()
    try:
        check_conversation(messages)
    except ValueError as error:
        raise ApiError(400, f"messages: {error}", param="messages") from None
    return messages


async def _live_stream(events: AsyncGenerator[dict[str, Any]]) -> AsyncIterator[str]:
    """The events as server-sent events; a failure is the last (the status was 200 already)."""
    try:
        # Closed with the response: a page that left cancels the stack's calls.
        async with aclosing(events):
            async for event in events:
                # A comment: a proxy sees traffic, an event reader sees nothing.
                yield ": keepalive\n\n" if event["event"] == KEEPALIVE else _event(event)
    except Exception as error:  # noqa: BLE001 - told to the page, which shows it
        yield _event({"event": ERROR, **_failure(error).body})


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _call_options(moa: ChatMoA, asked: ChatCompletionRequest) -> dict[str, Any]:
    """The request's settings as options of the final answer's call (the aggregator's)."""
    options: dict[str, Any] = {}
    if asked.stop:
        options["stop"] = asked.stop
    if asked.temperature is not None:
        options["temperature"] = asked.temperature
    if (limit := asked.answer_max_tokens) is not None:
        options.update(_length_option(moa, limit))
    return options


def _length_option(moa: ChatMoA, limit: int) -> dict[str, Any]:
    """``max_tokens`` for the aggregator, where its server reads it.

    langchain-openai sends a call's ``max_tokens`` as ``max_completion_tokens``,
    which some OpenAI-compatible servers ignore (llama.cpp's); models made for
    them (``openai_compatible_model``, the embedded server's) carry theirs in
    ``extra_body`` instead, and so does this limit when every aggregator has
    the same ``extra_body`` (a call's option replaces the model's whole).
    """
    attempts = [moa.stack.aggregator, *moa.stack.fallbacks]
    bodies = [getattr(model, "extra_body", None) for model in attempts]
    first = bodies[0]
    if isinstance(first, dict) and "max_tokens" in first and all(b == first for b in bodies):
        return {"extra_body": {**first, "max_tokens": limit}}
    return {"max_tokens": limit}


async def _streamed(
    moa: ChatMoA,
    asked: ChatCompletionRequest,
    messages: list[BaseMessage],
    options: dict[str, Any],
    give_back: Callable[[], None],
) -> Response:
    """The answer as server-sent events, or an error answer if it fails before its first token.

    The first chunk is awaited before the response starts: the proposers'
    layers run then, and their failure is a status code a client can act on
    (503), not an event in a stream that began with 200.
    """
    stream = aiter(moa.astream(messages, **options))
    try:
        first = await anext(stream, None)
    except BaseException:
        await _close(stream)
        raise
    id_, created = _completion_id(), int(time.time())
    include_usage = asked.include_usage

    def event(delta: dict[str, Any] | None, finish_reason: str | None = None) -> str:
        return _event(
            chunk(
                id_=id_,
                model=asked.model,
                created=created,
                delta=delta,
                finish_reason=finish_reason,
                include_usage=include_usage,
            )
        )

    async def events() -> AsyncIterator[str]:
        answer: AIMessageChunk | None = None
        yield event({"role": "assistant", "content": ""})
        try:
            part = first
            while part is not None:
                if part.usage_metadata:
                    answer = part
                if text := part.text:
                    # Each chunk as the stack streamed it: never split or merged.
                    yield event({"content": text})
                part = await anext(stream, None)
        except Exception as error:  # noqa: BLE001 - told to the client, then the stream ends
            yield _event(_failure(error).body)
            return
        yield event({}, finish_reason(answer))
        if include_usage:
            last = chunk(id_=id_, model=asked.model, created=created, delta=None)
            yield _event({**last, "usage": usage(answer.usage_metadata if answer else None)})
        yield _event("[DONE]")

    async def close() -> None:
        give_back()
        await _close(stream)

    return _ClosingStream(events(), close)


async def _close(stream: AsyncIterable[Any]) -> None:
    closing = getattr(stream, "aclose", None)
    if closing is not None:
        await closing()


def server_config(app: Any, *, log_level: str = "info") -> uvicorn.Config:
    """Uvicorn's settings for ``app``: long keep-alive, a deep backlog, no lifespan."""
    return uvicorn.Config(
        app,
        lifespan="off",
        log_level=log_level,
        # uvicorn closes an idle connection after 5 s by default, and a client
        # that reuses it at that moment reads a reset; OpenAI's clients keep
        # their connections (and a balancer in front keeps its own) longer.
        timeout_keep_alive=75,
        timeout_graceful_shutdown=10,
        # Many clients connect at once under load.
        backlog=4096,
    )


def run(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    listening: Callable[[str], Any] | None = None,
) -> None:
    """Serve ``app`` in the foreground until SIGINT or SIGTERM (the ``moa serve`` command).

    Args:
        app: The ASGI app.
        host: The address to listen on.
        port: The port (0: a free one).
        listening: Called with the live page's address once the socket listens
            (``moa ui`` opens a browser there).
    """
    sock = tcp_listener(host, port, reuse_address=True)
    bound = sock.getsockname()[1]
    logger.info("serving on http://%s:%d/v1", host, bound)
    if listening is not None:
        listening(page_url(host, bound))
    # uvicorn runs its own event loop here: this is the program's entry point.
    uvicorn.Server(server_config(app)).run(sockets=[sock])


def page_url(host: str, port: int) -> str:
    """The live page's address for a browser on this machine."""
    # A wildcard address listens everywhere but is nowhere to connect to.
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"
