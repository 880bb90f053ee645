"""A scripted OpenAI-compatible server on 127.0.0.1: real HTTP, predictable replies.

``POST /v1/chat/completions``, plain or streamed (server-sent events, usage
in a last chunk when ``stream_options.include_usage`` asks for it), as
OpenAI's API answers it. What it replies:

- ``tools`` in the request, ``tool_choice`` not ``"none"`` and the last
  message the user's: one tool call. The tool is the one ``tool_choice``
  names, else the first whose name the user's message mentions, else the
  first. Its arguments follow the tool's JSON schema, filled from the
  user's message: integers in order of appearance, quoted text for strings
  (then a phrase made from the message).
- ``response_format`` ``json_schema``: a JSON object following the schema,
  filled from the last message as tool arguments are; ``json_object``:
  ``{"answer": <the scripted text>}``.
- The last message a tool result: a text answer that quotes it.
- Otherwise: a text answer that quotes the user's last message.

Like OpenAI's API it refuses (400) a tool message that answers no earlier
tool call, and a request without messages. Every request body is kept in
``requests``.

Two additions for the kill-and-resume tests of ``moa eval``
(``test_eval_resume.py``); without them it behaves as above:

- ``answer``: a function of the request body that gives a text answer (a judge's
  verdict, say), or None to answer as above.
- ``hold_after(n, where=...)``: answer ``n`` more requests (of those ``where``
  picks; others pass), then hold every later one (the client waits) until
  ``release()``; ``held`` counts the requests waiting. A test can so kill a
  client mid-run at a point of its choosing, without timing luck. A held request
  whose client is gone is dropped quietly.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

COMPLETIONS_PATH = "/v1/chat/completions"

_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"")
_INTEGER = re.compile(r"-?\d+")


class BadRequestError(ValueError):
    """The request is one OpenAI's API would refuse."""


def _text(content: Any) -> str:
    """The text of a message's content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict)).strip()
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _json_type(schema: dict[str, Any]) -> str:
    """A property's JSON type; the first non-null one of ``anyOf`` (optional fields)."""
    if "type" in schema:
        kind = schema["type"]
        return next(t for t in kind if t != "null") if isinstance(kind, list) else kind
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return _json_type(option)
    return "string"


def tool_arguments(parameters: dict[str, Any], message: str) -> dict[str, Any]:
    """Arguments for a tool with these JSON-schema ``parameters``, read from ``message``."""
    integers = iter(int(n) for n in _INTEGER.findall(message))
    quoted = iter(a or b for a, b in _QUOTED.findall(message))
    phrase = message.rstrip("?!. ")
    arguments: dict[str, Any] = {}
    for name, schema in parameters.get("properties", {}).items():
        kind = _json_type(schema)
        if kind in {"integer", "number"}:
            arguments[name] = next(integers, 0)
        elif kind == "boolean":
            arguments[name] = True
        elif kind == "array":
            arguments[name] = []
        elif kind == "object":
            arguments[name] = {}
        else:
            arguments[name] = next(quoted, f"{name.replace('_', ' ')} for: {phrase}")
    return arguments


def _check_tool_turns(messages: list[dict[str, Any]]) -> None:
    """Refuse what OpenAI refuses: a tool message answering no earlier tool call."""
    if not messages:
        raise BadRequestError("messages must not be empty")
    called: set[str] = set()
    for message in messages:
        if message.get("role") == "assistant":
            called |= {call["id"] for call in message.get("tool_calls") or []}
        elif message.get("role") == "tool" and message.get("tool_call_id") not in called:
            msg = f"tool message for {message.get('tool_call_id')!r} answers no earlier tool call"
            raise BadRequestError(msg)


def _chosen_tool(tools: list[dict[str, Any]], tool_choice: Any, message: str) -> dict[str, Any]:
    functions = [tool["function"] for tool in tools]
    if isinstance(tool_choice, dict):
        name = tool_choice["function"]["name"]
        return next(f for f in functions if f["name"] == name)
    mentioned = [f for f in functions if f["name"] in message]
    return (mentioned or functions)[0]


class ScriptedOpenAI:
    """The server, run in a thread; a context manager. ``base_url`` ends in ``/v1``."""

    def __init__(self, answer: Callable[[dict[str, Any]], str | None] | None = None) -> None:
        """Describe the server; it starts on ``__enter__``.

        Args:
            answer: The text answer to a request body, or None for the scripted one.
        """
        self.requests: list[dict[str, Any]] = []
        self.answer = answer
        self.held = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._gate = threading.Condition()
        self._allowance: int | None = None
        self._releases = 0
        self._holds: Callable[[dict[str, Any]], bool] = lambda _request: True
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._http is None:
            raise RuntimeError("the scripted server is not running")
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> Self:
        """Listen on a free 127.0.0.1 port and serve in a daemon thread."""
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving and close the socket."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def hold_after(self, count: int, where: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Answer ``count`` more requests, then hold the later ones until `release`.

        Args:
            count: Requests answered before the gate closes.
            where: Which request bodies are counted and held (default: all); the others
                are answered as usual.
        """
        with self._gate:
            self._allowance = count
            self._holds = where or (lambda _request: True)

    def release(self) -> None:
        """Answer every request again, those held first."""
        with self._gate:
            self._allowance = None
            # Each held request waits for this release, not for the gate to be open: a
            # `hold_after` right after it cannot catch a request that has not woken yet.
            self._releases += 1
            self.held = 0
            self._gate.notify_all()

    def wait_turn(self, request: dict[str, Any]) -> None:
        """Return when this request may be answered (at once unless `hold_after` holds)."""
        with self._gate:
            if self._allowance is None or not self._holds(request):
                return
            if self._allowance > 0:
                self._allowance -= 1
                return
            self.held += 1
            releases = self._releases
            self._gate.wait_for(lambda: self._releases != releases)

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def reply(self, request: dict[str, Any]) -> dict[str, Any]:
        """The assistant message (``content``, ``tool_calls``) for a request body."""
        messages = request.get("messages") or []
        _check_tool_turns(messages)
        last = messages[-1]
        text = _text(last.get("content"))
        tools = request.get("tools") or []
        tool_choice = request.get("tool_choice")
        if tools and tool_choice != "none" and last.get("role") == "user":
            function = _chosen_tool(tools, tool_choice, text)
            arguments = tool_arguments(function.get("parameters", {}), text)
            call = {
                "id": f"call_{self._next_id()}",
                "type": "function",
                "function": {
                    "name": function["name"],
                    "arguments": json.dumps(arguments, ensure_ascii=False),
                },
            }
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        answer_format = request.get("response_format") or {}
        if answer_format.get("type") == "json_schema":
            schema = answer_format.get("json_schema", {}).get("schema", {})
            return {"role": "assistant", "content": json.dumps(tool_arguments(schema, text))}
        if answer_format.get("type") == "json_object":
            return {"role": "assistant", "content": json.dumps({"answer": text})}
        if last.get("role") == "tool":
            return {"role": "assistant", "content": f"The tool answered: {text}"}
        answer = self.answer(request) if self.answer is not None else None
        if answer is not None:
            return {"role": "assistant", "content": answer}
        return {"role": "assistant", "content": f"A scripted answer to: {text}"}

    def usage(self, request: dict[str, Any], message: dict[str, Any]) -> dict[str, int]:
        """Token usage, counting words."""
        prompt = sum(_words(_text(m.get("content"))) for m in request.get("messages", []))
        completion = _words(message.get("content") or "") + sum(
            _words(call["function"]["arguments"]) + 1 for call in message.get("tool_calls", [])
        )
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        """A ``chat.completion`` object."""
        message = self.reply(request)
        return {
            "id": f"chatcmpl-{self._next_id()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    "logprobs": None,
                }
            ],
            "usage": self.usage(request, message),
        }

    def chunks(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``chat.completion.chunk`` objects of a streamed completion."""
        message = self.reply(request)
        base = {
            "id": f"chatcmpl-{self._next_id()}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.get("model", "scripted"),
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return {**base, "choices": [choice]}

        chunks = [chunk({"role": "assistant", "content": ""})]
        words = (message.get("content") or "").split(" ")
        chunks += [chunk({"content": w if i == 0 else f" {w}"}) for i, w in enumerate(words) if w]
        for index, call in enumerate(message.get("tool_calls", [])):
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            head = {"name": name, "arguments": ""}
            chunks.append(
                chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                       "function": head}]})
            )  # fmt: skip
            middle = max(1, len(arguments) // 2)
            chunks += [
                chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
                for part in (arguments[:middle], arguments[middle:])
                if part
            ]
        chunks.append(chunk({}, "tool_calls" if message.get("tool_calls") else "stop"))
        if (request.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": self.usage(request, message)})
        return chunks


def _handler_for(server: ScriptedOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            """Quiet: pytest shows failures, not access logs."""

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: HTTPStatus, message: str) -> None:
            body = {"error": {"message": message, "type": "invalid_request_error"}}
            self._send(status, json.dumps(body).encode(), "application/json")

        def do_POST(self) -> None:
            if self.path.split("?")[0] != COMPLETIONS_PATH:
                self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")
                return
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.requests.append(request)
            server.wait_turn(request)
            # A held request's client may have been killed: then nobody is left to answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._answer(request)

        def _answer(self, request: dict[str, Any]) -> None:
            try:
                if not request.get("stream"):
                    body = json.dumps(server.completion(request), ensure_ascii=False)
                    self._send(HTTPStatus.OK, body.encode(), "application/json")
                    return
                chunks = server.chunks(request)
            except BadRequestError as refused:
                self._error(HTTPStatus.BAD_REQUEST, str(refused))
                return
            # Sent as written, without a length: the end of the connection ends the body.
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

    return Handler
