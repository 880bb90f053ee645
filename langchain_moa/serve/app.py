"""MoA stacks served as OpenAI's chat completions API (Starlette), and its uvicorn runner.

``create_app`` serves each stack under a model id::

    app = create_app({"local": ChatMoA, "mine": lambda: ChatMoA.from_config("mine.yaml")})

Routes: ``POST /v1/chat/completions`` and ``POST /v1/responses`` (plain and
streamed, with tools, structured answers and images: ``langchain_moa.serve.chat``
and ``langchain_moa.serve.responses``), ``GET /v1/models``, ``GET /health`` (no
key needed, for load balancers), and the live page: ``GET /`` (plain HTML, CSS
and JavaScript from ``langchain_moa/serve/page``, no key needed: it holds
nothing but code) and ``POST /live``, one answer's layer events as server-sent
events (see ``langchain_moa.serve.live``). Requests and answers are OpenAI's
(``openai_format`` and ``responses_format`` say what is honoured and what
refused), and so are errors: ``{"error": {"message", "type", "param",
"code"}}`` with 400, 401, 403, 404, 413, 415, 429, 503 or 500.

Nothing is kept between requests but the stacks themselves (each built on
its first request and shared: ``ChatMoA`` runs concurrent requests) and, for
stacks with ``fanout: per_turn``, the references of answers that called
tools, so that a tool loop's next steps need not run the proposers again
(``langchain_moa.serve.turns``: bounded, in memory; another instance just
runs them). Instances can scale out behind a load balancer. The concurrency
limit is each instance's own; past it a request is refused with 429 at once,
never queued, so that a balancer can send it elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Mapping
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import ValidationError

from langchain_moa.accounting import redact
from langchain_moa.chat_models import ChatMoA
from langchain_moa.serve import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_MESSAGES,
    EXTRA_HINT,
    ServeExtraMissingError,
)
from langchain_moa.serve.chat import chat_ask, chat_completion
from langchain_moa.serve.http import ApiError, ClosingStream, failure, sse
from langchain_moa.serve.live import ERROR, KEEPALIVE, live_events
from langchain_moa.serve.openai_format import (
    ApiRequest,
    ChatCompletionRequest,
    describe_validation,
    error_body,
    model_card,
)
from langchain_moa.serve.responses import response
from langchain_moa.serve.responses_format import ResponsesRequest
from langchain_moa.serve.turns import TurnReferences
from langchain_moa.sockets import tcp_listener
from langchain_moa.stacks import LOCAL_MOA, PRESETS, StackError

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.datastructures import Headers
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
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

R = TypeVar("R", bound=ApiRequest)


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
            Route("/v1/responses", api.responses, methods=["POST"]),
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
        self.turns = TurnReferences()

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

    def parse(self, payload: Any, schema: type[R]) -> R:
        """The request, checked.

        Raises:
            ApiError: 400 naming the first bad field.
        """
        try:
            asked = schema.model_validate(payload)
        except ValidationError as error:
            message, param = describe_validation(error)
            raise ApiError(400, message, param=param) from None
        field = asked.conversation_field
        messages = getattr(asked, field)
        if len(messages) > self.max_messages:
            raise ApiError(
                400,
                f"{field}: {len(messages)} messages, at most {self.max_messages} are taken",
                param=field,
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
        """``POST /v1/chat/completions``, plain or streamed (``langchain_moa.serve.chat``)."""
        return await self.answer(request, ChatCompletionRequest, chat_completion)

    async def responses(self, request: Request) -> Response:
        """``POST /v1/responses``, plain or streamed (``langchain_moa.serve.responses``)."""
        return await self.answer(request, ResponsesRequest, response)

    async def answer(
        self,
        request: Request,
        schema: type[R],
        endpoint: Callable[..., Any],
    ) -> Response:
        """Check, admit and answer a request with ``endpoint``; every failure is OpenAI's."""
        try:
            self.authorize(request)
            _refuse_other_sites(request)
            self.slots.take()
        except ApiError as error:
            return error.response()
        handed_over = False
        try:
            asked = self.parse(await self.read_json(request), schema)
            moa = await self.served.get(asked.model)
            turns = self.turns if moa.fanout == "per_turn" else None
            answered, handed_over = await endpoint(moa, asked, turns, self.slots.give_back)
        except Exception as error:  # noqa: BLE001 - every failure is answered as OpenAI's
            return failure(error).response()
        else:
            # A stream gives the slot back when it ends.
            return answered
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
        under the same key and the same concurrency limit; the page shows text
        answers, so tools and ``response_format`` are refused. It must be sent
        as JSON: a form on another site can post text, never JSON, without the
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
            asked = _text_only(self.parse(await self.read_json(request), ChatCompletionRequest))
            moa = await self.served.get(asked.model)
            _, messages, options = chat_ask(asked).prepare(moa)
            events = live_events(moa, messages, **options)
        except Exception as error:  # noqa: BLE001 - every failure is answered as OpenAI's
            return failure(error).response()
        else:
            # The stream gives the slot back when it ends.
            handed_over = True
            return ClosingStream(_live_stream(events), close)
        finally:
            if not handed_over:
                self.slots.give_back()


def _text_only(asked: ChatCompletionRequest) -> ChatCompletionRequest:
    """Refuse tools and structured answers: the live page shows text.

    Raises:
        ApiError: 400 naming ``tools`` or ``response_format``.
    """
    if asked.tools or asked.response_format:
        field = "tools" if asked.tools else "response_format"
        message = f"{field}: the live page shows text answers; ask /v1/chat/completions"
        raise ApiError(400, message, param=field)
    return asked


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


async def _live_stream(events: AsyncGenerator[dict[str, Any]]) -> AsyncIterator[str]:
    """The events as server-sent events; a failure is the last (the status was 200 already)."""
    try:
        # Closed with the response: a page that left cancels the stack's calls.
        async with aclosing(events):
            async for event in events:
                # A comment: a proxy sees traffic, an event reader sees nothing.
                yield ": keepalive\n\n" if event["event"] == KEEPALIVE else sse(event)
    except Exception as error:  # noqa: BLE001 - told to the page, which shows it
        yield sse({"event": ERROR, **failure(error).body})


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
