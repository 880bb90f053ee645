"""An OpenAI-compatible server on 127.0.0.1 that answers on a schedule set per model name.

``POST /v1/chat/completions`` (plain, or streamed as server-sent events with a
usage chunk when ``stream_options.include_usage`` asks for it) and
``GET /v1/models``, served by uvicorn in a background thread of the caller
(``ScheduledServer``) or as a program of its own::

    python -m langchain_moa.bench.server --port 0 --behaviours '{"slow": {"tokens": 8}}'

which prints ``{"port": N}`` on stdout once it listens (``ServerProcess`` in
``langchain_moa.bench.process`` starts and stops it). Either way the server
reports its own records: ``GET /bench/records``, ``POST /bench/reset`` (the
records so far, then forgotten), ``GET /bench/peak?behaviour=`` and
``GET /bench/errors``.

A request's model name is ``<behaviour>[.<tag>...]``: the behaviour (registered
with the server, or written inline as ``<name>-<seconds>s`` for a fixed time
to first token) says when the first token comes, how many tokens follow and
how fast; tags tell models apart. Every random draw is seeded by the request
(the server's seed, the full model name and the messages), so the same request
waits the same time in every run and every client: the server knows each
request's schedule, and records when each one arrived, sent its first token
and ended, and the most requests it held at once per behaviour and in all.
A question may carry ``[q<N>]`` to name the query it belongs to.

A behaviour with ``tool_calls=N`` plays an agent's model: offered tools, it
calls the first one while the conversation holds fewer than N tool results
since the last user message, then answers in text.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from langchain_moa.bench import EXTRA_HINT, BenchExtraMissingError
from langchain_moa.bench.serving import BackgroundServer, serve

try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route
except ImportError as error:  # pragma: no cover - the bench extra is in the test set-up
    msg = f"the benchmark's server needs starlette and uvicorn: {EXTRA_HINT}"
    raise BenchExtraMissingError(msg) from error

TAG = "."
QUERY = re.compile(r"\[q(\d+)\]")
_INLINE = re.compile(r"^([^.]*?-(\d+(?:\.\d+)?)s)(?:\.|$)")
TAIL_CAP_S = 30.0
"""The longest a heavy tail's draw may be: a benchmark must end."""
HTTP_NOT_FOUND = 404


@dataclass(frozen=True)
class Behaviour:
    """When a model's reply comes, and how.

    Args:
        first_token_s: The time to first token is drawn uniformly from this range.
        tokens: Tokens (words) in the reply.
        tokens_per_s: Pace of the tokens after the first; 0 sends them all at once.
        tail_p: Chance that a request falls in the heavy tail instead.
        tail_scale_s: A tail's time to first token is ``tail_scale_s`` times a
            Pareto draw (at least 1), capped at ``TAIL_CAP_S``.
        tail_alpha: The Pareto shape: the smaller, the heavier the tail.
        tool_calls: Offered tools, the reply is a call of the first tool while
            fewer than this many tool results follow the last user message.
    """

    first_token_s: tuple[float, float] = (0.0, 0.0)
    tokens: int = 16
    tokens_per_s: float = 0.0
    tail_p: float = 0.0
    tail_scale_s: float = 1.0
    tail_alpha: float = 1.5
    tool_calls: int = 0

    @classmethod
    def fixed(cls, seconds: float, **kwargs: Any) -> Behaviour:
        """The first token after exactly ``seconds``."""
        return cls(first_token_s=(seconds, seconds), **kwargs)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Behaviour:
        """The behaviour ``dataclasses.asdict`` wrote (a JSON list for the range)."""
        fields = dict(data)
        if "first_token_s" in fields:
            low, high = fields["first_token_s"]
            fields["first_token_s"] = (float(low), float(high))
        return cls(**fields)


def behaviours_json(behaviours: Mapping[str, Behaviour]) -> str:
    """``behaviours`` as the server program's ``--behaviours`` reads them."""
    return json.dumps({name: dataclasses.asdict(b) for name, b in behaviours.items()})


def behaviours_from_json(text: str) -> dict[str, Behaviour]:
    """The behaviours ``behaviours_json`` wrote."""
    return {name: Behaviour.from_json(fields) for name, fields in json.loads(text).items()}


@dataclass(frozen=True)
class Schedule:
    """One request's plan: seconds after its arrival."""

    first_token_s: float
    tokens: int
    tokens_per_s: float

    @property
    def total_s(self) -> float:
        """When the last token is due."""
        if self.tokens_per_s <= 0 or self.tokens <= 1:
            return self.first_token_s
        return self.first_token_s + (self.tokens - 1) / self.tokens_per_s

    def token_at(self, index: int) -> float:
        """When token ``index`` (0 first) is due."""
        if self.tokens_per_s <= 0:
            return self.first_token_s
        return self.first_token_s + index / self.tokens_per_s


def draw(behaviour: Behaviour, seed: str) -> Schedule:
    """The schedule ``behaviour`` gives the request that ``seed`` names.

    >>> draw(Behaviour.fixed(0.5, tokens=11, tokens_per_s=100.0), "x").total_s
    0.6
    """
    # Seeded, not for security: the schedule must be the same in every run.
    rng = random.Random(seed)  # noqa: S311
    low, high = behaviour.first_token_s
    first = rng.uniform(low, high)
    if behaviour.tail_p > 0 and rng.random() < behaviour.tail_p:
        tail = behaviour.tail_scale_s * rng.paretovariate(behaviour.tail_alpha)
        first = min(TAIL_CAP_S, max(first, tail))
    return Schedule(first, behaviour.tokens, behaviour.tokens_per_s)


def request_seed(seed: int, model: str, messages: Any) -> str:
    """What seeds a request's draws: the server's seed, the model and the messages."""
    digest = hashlib.sha256(json.dumps([model, messages], sort_keys=True).encode()).hexdigest()
    return f"{seed}:{digest}"


@dataclass
class Record:
    """One request as the server saw it (``time.perf_counter`` seconds)."""

    model: str
    query: int | None
    schedule: Schedule
    arrived: float
    first_token: float = math.nan
    ended: float = math.nan
    stream: bool = False
    tool_call: bool = False
    """Whether the reply was a tool call."""

    @property
    def behaviour(self) -> str:
        """The model name's behaviour part (its group)."""
        return group_of(self.model)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON (a time not reached yet is null)."""
        data = dataclasses.asdict(self)
        for name in ("first_token", "ended"):
            if math.isnan(data[name]):
                data[name] = None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        """The record ``to_json`` wrote."""
        fields = dict(data)
        fields["schedule"] = Schedule(**fields["schedule"])
        for name in ("first_token", "ended"):
            if fields[name] is None:
                fields[name] = math.nan
        return cls(**fields)


def group_of(model: str) -> str:
    """A model name's behaviour part: before its first dot, or its inline ``<name>-<s>s``."""
    if found := _INLINE.match(model):
        return found.group(1)
    return model.split(TAG, 1)[0]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def tool_results(messages: list[Mapping[str, Any]]) -> int:
    """Tool results since the last user message."""
    count = 0
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        count += message.get("role") == "tool"
    return count


SCHEMA_DEFAULTS: dict[str, Any] = {
    "string": "x",
    "integer": 1,
    "number": 1.0,
    "boolean": True,
    "array": [],
    "object": {},
}
"""A tool call's argument by its JSON schema type, when the schema has no default."""


def tool_arguments(tool: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments for an OpenAI ``tools`` entry: each property's default, or one of its type's."""
    parameters = (tool.get("function") or {}).get("parameters") or {}
    arguments = {}
    for name, schema in (parameters.get("properties") or {}).items():
        if "default" in schema:
            arguments[name] = schema["default"]
        else:
            arguments[name] = SCHEMA_DEFAULTS.get(schema.get("type", "string"), "x")
    return arguments


def query_of(messages: list[Mapping[str, Any]]) -> int | None:
    """The ``[q<N>]`` of the last user message, if it has one."""
    for message in reversed(messages):
        if message.get("role") == "user":
            found = QUERY.search(_text(message.get("content")))
            return int(found.group(1)) if found else None
    return None


@dataclass
class _InFlight:
    now: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)

    def enter(self, group: str) -> None:
        for key in (group, ""):
            self.now[key] += 1
            self.peak[key] = max(self.peak[key], self.now[key])

    def leave(self, group: str) -> None:
        for key in (group, ""):
            self.now[key] -= 1


class ScheduledServer:
    """The server, a context manager; ``base_url`` ends in ``/v1``.

    Args:
        behaviours: Behaviour by name (a model name's part before its first dot).
        seed: Seeds every draw, with the request's model and messages.
    """

    def __init__(self, behaviours: Mapping[str, Behaviour] | None = None, *, seed: int = 0) -> None:
        """Describe the server; it starts on ``__enter__``."""
        self.behaviours = dict(behaviours or {})
        self.seed = seed
        self.records: list[Record] = []
        """Every request since the last ``reset``, in order of arrival."""
        self.errors: list[BaseException] = []
        """Exceptions the server itself raised (a bug here)."""
        self._in_flight = _InFlight()
        self._lock = threading.Lock()
        self._ids = 0
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/bench/records", self._records, methods=["GET"]),
                Route("/bench/reset", self._reset, methods=["POST"]),
                Route("/bench/peak", self._peak, methods=["GET"]),
                Route("/bench/errors", self._errors, methods=["GET"]),
            ]
        )
        self._server = BackgroundServer(self.app, name="scheduled-server")

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return self._server.base_url

    @property
    def thread_id(self) -> int | None:
        """The serving thread's id (its CPU time is the server's, not the client's)."""
        thread = self._server.thread
        return None if thread is None else thread.ident

    def __enter__(self) -> Self:
        """Start serving in a daemon thread."""
        self._server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self._server.stop()

    def behaviour(self, model: str) -> Behaviour | None:
        """The behaviour of ``model``: registered, or inline (``<name>-0.35s``)."""
        name = model.split(TAG, 1)[0]
        if name in self.behaviours:
            return self.behaviours[name]
        if found := _INLINE.match(model):
            return Behaviour.fixed(float(found.group(2)))
        return None

    def reset(self) -> list[Record]:
        """Forget the records and peaks so far; returns the records."""
        with self._lock:
            records, self.records = self.records, []
            self._in_flight.peak = Counter(self._in_flight.now)
        return records

    def peak_in_flight(self, behaviour: str = "") -> int:
        """The most requests held at once since ``reset``: of ``behaviour``, or all."""
        return self._in_flight.peak[behaviour]

    def _next_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"chatcmpl-{self._ids}"

    async def _records(self, _: Request) -> Response:
        with self._lock:
            records = list(self.records)
        return JSONResponse([r.to_json() for r in records])

    async def _reset(self, _: Request) -> Response:
        return JSONResponse([r.to_json() for r in self.reset()])

    async def _peak(self, request: Request) -> Response:
        return JSONResponse(self.peak_in_flight(request.query_params.get("behaviour", "")))

    async def _errors(self, _: Request) -> Response:
        return JSONResponse([repr(e) for e in self.errors])

    async def _models(self, _: Request) -> Response:
        data = [{"id": name, "object": "model", "owned_by": "bench"} for name in self.behaviours]
        return JSONResponse({"object": "list", "data": data})

    async def _completions(self, request: Request) -> Response:
        arrived = time.perf_counter()
        try:
            body = await request.json()
            model = str(body.get("model", ""))
            behaviour = self.behaviour(model)
            if behaviour is None:
                return _error(HTTP_NOT_FOUND, f"The model `{model}` does not exist")
            messages = body.get("messages") or []
            schedule = draw(behaviour, request_seed(self.seed, model, messages))
            record = Record(
                model,
                query_of(messages),
                schedule,
                arrived,
                stream=bool(body.get("stream")),
                tool_call=bool(body.get("tools")) and tool_results(messages) < behaviour.tool_calls,
            )
            with self._lock:
                self.records.append(record)
                self._in_flight.enter(record.behaviour)
            if record.stream:
                return StreamingResponse(self._events(body, record), media_type="text/event-stream")
            try:
                await _sleep_until(arrived + schedule.total_s)
                record.first_token = record.ended = time.perf_counter()
                return JSONResponse(self._completion(body, record))
            finally:
                self._left(record)
        except Exception as error:
            self.errors.append(error)
            raise

    def _left(self, record: Record) -> None:
        with self._lock:
            self._in_flight.leave(record.behaviour)

    def _completion(self, body: Mapping[str, Any], record: Record) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": " ".join(_words(record))}
        if record.tool_call:
            message = {"role": "assistant", "content": None, "tool_calls": [_tool_call(body)]}
        return {
            "id": self._next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": record.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if record.tool_call else "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(body, record),
        }

    async def _events(self, body: Mapping[str, Any], record: Record) -> AsyncIterator[bytes]:
        base = {
            "id": self._next_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": record.model,
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return _sse(json.dumps({**base, "choices": [choice]}))

        try:
            if record.tool_call:
                call = _tool_call(body)
                yield chunk({"role": "assistant", "content": None})
                await _sleep_until(record.arrived + record.schedule.first_token_s)
                record.first_token = time.perf_counter()
                # As OpenAI streams a call: its name first, then its arguments.
                named = {**call, "function": {**call["function"], "arguments": ""}}
                yield chunk({"tool_calls": [{"index": 0, **named}]})
                arguments = {"arguments": call["function"]["arguments"]}
                yield chunk({"tool_calls": [{"index": 0, "function": arguments}]})
                await _sleep_until(record.arrived + record.schedule.total_s)
                yield chunk({}, "tool_calls")
            else:
                yield chunk({"role": "assistant", "content": ""})
                for index, word in enumerate(_words(record)):
                    await _sleep_until(record.arrived + record.schedule.token_at(index))
                    if index == 0:
                        record.first_token = time.perf_counter()
                    yield chunk({"content": word if index == 0 else f" {word}"})
                yield chunk({}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                yield _sse(json.dumps({**base, "choices": [], "usage": _usage(body, record)}))
            yield _sse("[DONE]")
            record.ended = time.perf_counter()
        finally:
            self._left(record)


async def _sleep_until(when: float) -> None:
    # Sleeps to an absolute time: the schedule is kept however late a step ran.
    if (wait := when - time.perf_counter()) > 0:
        await asyncio.sleep(wait)


def _tool_call(body: Mapping[str, Any]) -> dict[str, Any]:
    """A call of the request's first tool, its id named by the request (the same every run)."""
    tool = body["tools"][0]
    messages = body.get("messages") or []
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "id": f"call_{digest}",
        "type": "function",
        "function": {
            "name": tool["function"]["name"],
            "arguments": json.dumps(tool_arguments(tool)),
        },
    }


def _words(record: Record) -> list[str]:
    return [f"w{index}" for index in range(max(1, record.schedule.tokens))]


def _usage(body: Mapping[str, Any], record: Record) -> dict[str, int]:
    prompt = sum(len(_text(m.get("content")).split()) for m in body.get("messages") or [])
    completion = max(1, record.schedule.tokens)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _sse(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


def _error(status: int, message: str) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    return JSONResponse(body, status_code=status)


def main(argv: list[str] | None = None) -> None:
    """The server as a program: print ``{"port": N}`` once it listens, serve until stopped."""
    parser = argparse.ArgumentParser(
        prog="python -m langchain_moa.bench.server", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--port", type=int, default=0, help="0 (the default) takes a free one")
    parser.add_argument(
        "--behaviours", default="{}", help="JSON: a Behaviour's fields by behaviour name"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds every draw")
    args = parser.parse_args(argv)
    server = ScheduledServer(behaviours_from_json(args.behaviours), seed=args.seed)

    def ready(port: int) -> None:
        # The one line on stdout: the parent waits for it.
        print(json.dumps({"port": port}), flush=True)

    serve(server.app, port=args.port, on_ready=ready)


if __name__ == "__main__":
    main()
