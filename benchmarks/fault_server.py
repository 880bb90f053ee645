"""An OpenAI-compatible server on 127.0.0.1 that fails on purpose, per model name.

``POST /v1/chat/completions``, plain or streamed (server-sent events, a usage
chunk when ``stream_options.include_usage`` asks for it), served by uvicorn
in a background thread of the caller. The request's ``model`` chooses what
happens, so one server plays every model of a stack:

- ``ok``: a reply after a healthy latency (0.1-0.3 s by default, jittered).
- ``ok-slow``: the same after a slow one (0.8-1.2 s).
- ``slow-first-token``: nothing for ``first_token_s`` (1 s), then the reply.
- ``http-<code>``: that status with an OpenAI-style error body; a 429 carries
  ``Retry-After: <retry_after_s>``. ``down`` is ``http-503``.
- ``stall``: holds the request until the client gives up or the server stops.
- ``cut-stream``: streams a few chunks, then drops the connection; a plain
  request gets its headers and half of its body, then the drop.
- ``malformed-json``: a 200 whose body (or first event) is broken JSON.
- ``empty``: a 200 whose message content is empty.

``<fault>-once`` fails the first attempt of each request and answers its
retries (the openai SDK numbers its attempts in ``x-stainless-retry-count``).
Anything after a dot is a tag that tells models apart (``ok.p1``, ``ok.p2``):
requests are counted per full model name (``requests``).

Latencies are seeded by the request (model, messages, attempt), so the same
question to the same model waits the same time in every run and in every
stack: latency comparisons between stacks compare the stacks.

``refused_base_url`` is an address where nothing listens (a bound port that
never listens), for a model that is down for good: connection refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from langchain_moa.bench.serving import BackgroundServer

COMPLETIONS_PATH = "/v1/chat/completions"
REPLY_PREFIX = "An answer from "
"""How every reply starts: an answer holding it twice is two replies spliced."""
ONCE = "-once"
TAG = "."

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BEHAVIOURS = (
    "ok",
    "ok-slow",
    "slow-first-token",
    "http-<code>",
    "down",
    "stall",
    "cut-stream",
    "malformed-json",
    "empty",
)
"""What a model name can ask for (each also as ``<name>-once``, and ``.tag``ged)."""

_HTTP = re.compile(r"^http-(\d{3})$")
_ERROR_TYPES = {
    HTTPStatus.TOO_MANY_REQUESTS: "rate_limit_exceeded",
    HTTPStatus.SERVICE_UNAVAILABLE: "service_unavailable",
}
logger = logging.getLogger(__name__)


def behaviour(model: str, attempt: int = 0) -> str:
    """What a request for ``model`` gets on its ``attempt``-th try (0 first).

    >>> behaviour("http-500-once.p1", 0), behaviour("http-500-once.p1", 1)
    ('http-500', 'ok')
    """
    name = model.split(TAG, 1)[0]
    if name.endswith(ONCE):
        return "ok" if attempt > 0 else name.removesuffix(ONCE)
    return "http-503" if name == "down" else name


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict)).strip()
    return ""


def _sse(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


class FaultServer:
    """The server, a context manager; ``base_url`` ends in ``/v1``.

    Args:
        seed: Seeds every latency (with the request's model, messages and attempt).
        latency: Healthy reply time range, seconds.
        slow_latency: ``ok-slow``'s range, seconds.
        first_token_s: ``slow-first-token``'s wait before anything is sent.
        retry_after_s: The ``Retry-After`` of a 429, whole seconds (as HTTP has it).
        stall_s: The longest a ``stall`` holds a request, if the client does
            not give up first and the server does not stop.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        latency: tuple[float, float] = (0.1, 0.3),
        slow_latency: tuple[float, float] = (0.8, 1.2),
        first_token_s: float = 1.0,
        retry_after_s: int = 1,
        stall_s: float = 600.0,
    ) -> None:
        """Describe the server; it starts on ``__enter__``."""
        self.seed = seed
        self.latency = latency
        self.slow_latency = slow_latency
        self.first_token_s = first_token_s
        self.retry_after_s = retry_after_s
        self.stall_s = stall_s
        self.requests: Counter[str] = Counter()
        """Requests received per model name (every attempt counts)."""
        self.stalled = 0
        """Requests a ``stall`` holds right now."""
        self.errors: list[BaseException] = []
        """Exceptions the server itself raised (a bug here, not a fault on purpose)."""
        self._lock = threading.Lock()
        self._ids = 0
        self._server: BackgroundServer | None = None
        self._release: asyncio.Event | None = None
        self._refused: socket.socket | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        if self._server is None:
            msg = "the fault server is not running"
            raise RuntimeError(msg)
        return self._server.base_url

    @property
    def refused_base_url(self) -> str:
        """An address on 127.0.0.1 where every connection is refused."""
        if self._refused is None:
            msg = "the fault server is not running"
            raise RuntimeError(msg)
        return f"http://127.0.0.1:{self._refused.getsockname()[1]}/v1"

    def __enter__(self) -> Self:
        """Listen on a free 127.0.0.1 port, serving in a daemon thread.

        Raises:
            RuntimeError: The server did not start within 10 seconds.
        """
        # Bound but never listening: connecting gets a refusal, and holding
        # the port keeps any other program from taking it meanwhile.
        self._refused = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._refused.bind(("127.0.0.1", 0))
        # Not bound to a loop until first awaited (in the server's thread).
        self._release = asyncio.Event()
        app = Starlette(routes=[Route(COMPLETIONS_PATH, _Completions(self), methods=["POST"])])
        self._server = BackgroundServer(app, name="fault-server")
        try:
            self._server.start()
        except RuntimeError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release every stalled request, stop serving, free both ports."""
        if self._server is not None:
            if self._release is not None:
                self._server.call_soon(self._release.set)
            self._server.stop()
            self._server = None
        if self._refused is not None:
            self._refused.close()
            self._refused = None

    def next_id(self) -> str:
        """A fresh completion id."""
        with self._lock:
            self._ids += 1
            return f"chatcmpl-{self._ids}"

    def count(self, model: str) -> None:
        """Count a request for ``model``."""
        with self._lock:
            self.requests[model] += 1

    def delay(self, request: dict[str, Any], attempt: int, span: tuple[float, float]) -> float:
        """A latency in ``span``, the same for the same request in every run."""
        digest = hashlib.sha256(
            json.dumps(
                [request.get("model"), request.get("messages"), attempt], sort_keys=True
            ).encode()
        ).hexdigest()
        # A seeded generator, not for security: the jitter must be reproducible.
        return random.Random(f"{self.seed}:{digest}").uniform(*span)  # noqa: S311

    async def hold(self, receive: Receive) -> None:
        """Wait until the server stops, the client goes away, or ``stall_s`` passes."""
        assert self._release is not None  # noqa: S101 - set when serving starts

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waits = {asyncio.ensure_future(self._release.wait()), asyncio.ensure_future(gone())}
        self.stalled += 1
        try:
            await asyncio.wait(waits, timeout=self.stall_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.stalled -= 1
            for wait in waits:
                wait.cancel()


def reply_text(request: dict[str, Any]) -> str:
    """The answer: which model answered which question."""
    messages = request.get("messages") or [{}]
    question = _text(messages[-1].get("content"))
    return f"{REPLY_PREFIX}{request.get('model')} to: {question[:200]}"


def usage(request: dict[str, Any], text: str) -> dict[str, int]:
    """Token usage, counting words."""
    prompt = sum(len(_text(m.get("content")).split()) for m in request.get("messages") or [])
    completion = len(text.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@dataclass
class _Exchange:
    """One request: its ASGI channel, its body and what it is to get."""

    scope: Scope
    receive: Receive
    send: Send
    body: dict[str, Any]
    kind: str

    async def respond(self, response: Response) -> None:
        await response(self.scope, self.receive, self.send)

    async def start(self, content_type: bytes, length: int | None = None) -> None:
        headers = [(b"content-type", content_type)]
        if length is not None:
            headers.append((b"content-length", b"%d" % length))
        await self.send({"type": "http.response.start", "status": 200, "headers": headers})

    async def write(self, data: bytes, *, more: bool = True) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})


class _Completions:
    """The endpoint, a raw ASGI app: a cut needs the connection, not a response object."""

    def __init__(self, server: FaultServer) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.handle(scope, receive, send)
        except Exception as error:
            self.server.errors.append(error)
            logger.exception("fault server error")
            raise

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            body = await request.json()
        except ValueError:
            await _error(HTTPStatus.BAD_REQUEST, "the body is not JSON")(scope, receive, send)
            return
        server = self.server
        model = str(body.get("model", ""))
        attempt = int(request.headers.get("x-stainless-retry-count") or 0)
        server.count(model)
        exchange = _Exchange(scope, receive, send, body, behaviour(model, attempt))
        kind = exchange.kind
        if match := _HTTP.match(kind):
            status = HTTPStatus(int(match.group(1)))
            headers = {}
            if status == HTTPStatus.TOO_MANY_REQUESTS:
                headers["Retry-After"] = str(server.retry_after_s)
            await asyncio.sleep(server.delay(body, attempt, server.latency))
            await exchange.respond(_error(status, f"{model}: {status.phrase} (injected)", headers))
            return
        if kind == "stall":
            await server.hold(receive)
            await exchange.respond(_error(HTTPStatus.SERVICE_UNAVAILABLE, f"{model}: released"))
            return
        if kind == "ok-slow":
            wait = server.delay(body, attempt, server.slow_latency)
        elif kind == "slow-first-token":
            wait = server.first_token_s
        elif kind in {"ok", "cut-stream", "malformed-json", "empty"}:
            wait = server.delay(body, attempt, server.latency)
        else:
            message = f"The model `{model}` does not exist (behaviours: {', '.join(BEHAVIOURS)})"
            await exchange.respond(_error(HTTPStatus.NOT_FOUND, message))
            return
        if body.get("stream"):
            await self.stream(exchange, wait)
        else:
            await asyncio.sleep(wait)
            await self.plain(exchange)

    def text(self, exchange: _Exchange) -> str:
        return "" if exchange.kind == "empty" else reply_text(exchange.body)

    async def plain(self, exchange: _Exchange) -> None:
        body, text = exchange.body, self.text(exchange)
        completion = {
            "id": self.server.next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage(body, text),
        }
        encoded = json.dumps(completion).encode()
        if exchange.kind == "malformed-json":
            # A whole HTTP message (the length is right) whose JSON stops half-way.
            encoded = encoded[: len(encoded) // 2]
        if exchange.kind != "cut-stream":
            await exchange.respond(Response(encoded, media_type="application/json"))
            return
        # The headers promise the whole body; half is sent and the app returns:
        # uvicorn then closes the connection, as a crashed upstream would.
        await exchange.start(b"application/json", len(encoded))
        await exchange.write(encoded[: len(encoded) // 2])

    async def stream(self, exchange: _Exchange, wait: float) -> None:
        body, kind, text = exchange.body, exchange.kind, self.text(exchange)
        base = {
            "id": self.server.next_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return _sse(json.dumps({**base, "choices": [choice]}))

        words = text.split(" ") if text else []
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": w if i == 0 else f" {w}"}) for i, w in enumerate(words)]
        events.append(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(_sse(json.dumps({**base, "choices": [], "usage": usage(body, text)})))
        events.append(_sse("[DONE]"))
        if kind == "malformed-json":
            events = [_sse('{"id": "' + base["id"] + '", "choices": [{"delta": {"content": "An')]
        if kind == "cut-stream":
            events = events[: max(2, len(events) // 2)]
        await exchange.start(b"text/event-stream")
        await asyncio.sleep(wait)
        # The first token comes after the wait, the rest at a steady pace.
        gap = 0.01 if kind == "slow-first-token" else 0.0
        for event in events:
            await exchange.write(event)
            await asyncio.sleep(gap)
        if kind != "cut-stream":
            await exchange.write(b"", more=False)
        # A cut stream returns unfinished: uvicorn drops the connection.


def _error(status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> Response:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")  # noqa: PLR2004
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)
