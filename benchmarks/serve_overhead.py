"""What ``moa serve`` adds to a request over calling the same ``ChatMoA`` in process.

The stack is the embedded default's shape (2 layers: 3 proposers, then the
aggregator), its models answering at once in this process (``Instant``: a
fixed 12-word reply, streamed a word a chunk, with usage), so that what is
measured is the serving alone: the HTTP request and its parsing, the checks,
the conversion both ways, JSON or server-sent events, and the client's
reading. The same stack runs

- **in process**: ``await moa.ainvoke(question)``, or ``moa.astream`` read to its end;
- **served**: ``moa serve``'s app in uvicorn, in a child process (as a
  deployment runs it): ``POST /v1/chat/completions``, plain, or streamed and
  read to ``[DONE]``, asked from this process by two clients:
  ``httpx.AsyncClient`` (what the ``openai`` client is built on: what a
  Python caller sees) and a bare HTTP/1.1 client over asyncio streams
  (``RawClient``: it parses next to nothing, so what it measures is the
  server's own share; httpx's parsing of each event is not the server's).

At 1 and at 32 requests at once: each round sends that many together, and
each request's own latency is kept. Rounds alternate in process and served
(the order swapped each round) after a warm-up, so both meet the same
machine. The table gives the medians and what serving adds (served median
less in-process median).

Usage::

    .venv/bin/python benchmarks/serve_overhead.py [--rounds 60] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from langchain_moa import ChatMoA
from langchain_moa.bench.provenance import provenance

REPLY = "Mixture of agents stacks models in layers and one of them writes the answer."
QUESTION = "What is a mixture of agents?"
MODEL = "bench"
CONCURRENCY = (1, 32)
MODES = ("plain", "streamed")
WARM_UP = 5
"""Rounds of each row that are not kept: they warm connections and caches."""
TARGET_MS = 2.0


class Instant(BaseChatModel):
    """A model that answers ``REPLY`` at once (streamed a word a chunk), with usage."""

    @property
    def _llm_type(self) -> str:
        return "instant"

    @staticmethod
    def _usage(messages: list[BaseMessage]) -> UsageMetadata:
        prompt = sum(len(m.text.split()) for m in messages)
        reply = len(REPLY.split())
        return UsageMetadata(input_tokens=prompt, output_tokens=reply, total_tokens=prompt + reply)

    def _generate(self, messages: list[BaseMessage], *_: Any, **__: Any) -> ChatResult:
        message = AIMessage(content=REPLY, usage_metadata=self._usage(messages))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self, messages: list[BaseMessage], *_: Any, **__: Any
    ) -> Iterator[ChatGenerationChunk]:
        for index, word in enumerate(REPLY.split(" ")):
            yield ChatGenerationChunk(message=AIMessageChunk(content=f" {word}" if index else word))
        usage = self._usage(messages)
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=usage))

    async def _astream(
        self, messages: list[BaseMessage], *_: Any, **__: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages):
            yield chunk


def stack() -> ChatMoA:
    """The embedded default's shape over instant models."""
    return ChatMoA(proposers=[Instant() for _ in range(3)], aggregator=Instant(), layers=2)


def serve(port: int) -> None:
    """The served side: the stack in ``moa serve``'s app on 127.0.0.1 (until stdin ends)."""
    from langchain_moa.bench.serving import serve as serve_app  # noqa: PLC0415
    from langchain_moa.serve.app import create_app  # noqa: PLC0415

    app = create_app({MODEL: stack()}, max_concurrency=256)
    serve_app(app, port=port, on_ready=lambda bound: print(bound, flush=True))


class Served:
    """The served side in a child process, and a client of it."""

    def __enter__(self) -> Self:
        """Start the child and wait until it listens."""
        self.process = subprocess.Popen(  # noqa: S603 - this script, by this interpreter
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.strip().isdigit():
            msg = f"the served side did not start: {line!r}"
            raise RuntimeError(msg)
        self.url = f"http://127.0.0.1:{int(line)}/v1/chat/completions"
        return self

    def __exit__(self, *_: object) -> None:
        """Stop the child (its stdin's end stops it)."""
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


class RawClient:
    """HTTP/1.1 over kept-alive asyncio streams, reading answers to their end and no more."""

    def __init__(self, url: str, connections: int) -> None:
        """Describe the client; ``open`` connects."""
        address = url.split("//", 1)[1].split("/", 1)
        self.host, port = address[0].split(":")
        self.port, self.path = int(port), f"/{address[1]}"
        self.connections = connections
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def open(self) -> None:
        """Connect every connection."""
        for _ in range(self.connections):
            self.idle.put_nowait(await asyncio.open_connection(self.host, self.port))

    async def close(self) -> None:
        """Close every connection."""
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()
            await writer.wait_closed()

    async def post(self, body: bytes) -> float:
        """Send ``body``; read the whole answer (a length, or chunks to the last); its seconds."""
        reader, writer = await self.idle.get()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        started = time.perf_counter()
        writer.write(head.encode() + body)
        headers = await reader.readuntil(b"\r\n\r\n")
        if not headers.startswith(b"HTTP/1.1 200"):
            msg = f"the server answered {headers.splitlines()[0]!r}"
            raise RuntimeError(msg)
        lowered = headers.lower()
        if b"content-length:" in lowered:
            length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        else:
            await reader.readuntil(b"\r\n0\r\n\r\n")
        seconds = time.perf_counter() - started
        self.idle.put_nowait((reader, writer))
        return seconds


async def in_process(moa: ChatMoA, mode: str) -> float:
    """One in-process answer's seconds."""
    started = time.perf_counter()
    if mode == "plain":
        await moa.ainvoke(QUESTION)
    else:
        async for _ in moa.astream(QUESTION):
            pass
    return time.perf_counter() - started


async def served(client: httpx.AsyncClient, url: str, mode: str) -> float:
    """One served answer's seconds, the client reading all of it."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]}
    started = time.perf_counter()
    if mode == "plain":
        response = await client.post(url, json=body)
        response.raise_for_status()
        response.json()
    else:
        async with client.stream("POST", url, json={**body, "stream": True}) as response:
            response.raise_for_status()
            # Bytes as they come, not lines: the client's own parsing is not the server's cost.
            tail = b""
            async for part in response.aiter_raw():
                tail = (tail + part)[-32:]
            if not tail.endswith(b"data: [DONE]\n\n"):
                msg = f"the stream did not end with [DONE]: {tail!r}"
                raise RuntimeError(msg)
    return time.perf_counter() - started


SIDES = ("in_process", "served", "served_raw")


async def measure(rounds: int, url: str) -> dict[str, dict[str, list[float]]]:
    """Each request's seconds, and each round's, by ``mode@concurrency`` and by side."""
    moa = stack()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    times: dict[str, dict[str, list[float]]] = {}
    raw = RawClient(url, max(CONCURRENCY))
    await raw.open()
    question = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]}
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        for mode in MODES:
            body = json.dumps({**question, "stream": mode == "streamed"}).encode()
            for concurrency in CONCURRENCY:
                key = f"{mode}@{concurrency}"
                sides: dict[str, list[float]] = {}
                for side in SIDES:
                    sides[side], sides[f"{side}_rounds"] = [], []
                for number in range(rounds + WARM_UP):
                    # Rotated each round: no side always runs after the same one.
                    order = SIDES[number % 3 :] + SIDES[: number % 3]
                    for side in order:
                        if side == "in_process":
                            batch = [in_process(moa, mode) for _ in range(concurrency)]
                        elif side == "served":
                            batch = [served(client, url, mode) for _ in range(concurrency)]
                        else:
                            batch = [raw.post(body) for _ in range(concurrency)]
                        started = time.perf_counter()
                        seconds = await asyncio.gather(*batch)
                        wall = time.perf_counter() - started
                        if number >= WARM_UP:
                            sides[side] += seconds
                            sides[f"{side}_rounds"].append(wall)
                times[key] = sides
    await raw.close()
    return times


def summary(times: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    """A row per mode and concurrency, in ms: medians, and what serving adds to a request.

    A round's requests share the CPUs: what serving adds to each is the round's
    added time shared among them (at 1 request, that request's own).
    """
    rows = []
    for key, sides in times.items():
        mode, concurrency = key.split("@")
        at_once = int(concurrency)
        row: dict[str, Any] = {"mode": mode, "concurrency": at_once}
        for side in SIDES:
            row[f"{side}_ms"] = statistics.median(sides[side]) * 1000
            row[f"{side}_round_ms"] = statistics.median(sides[f"{side}_rounds"]) * 1000
        row["requests"] = len(sides["served"])
        for side in ("served", "served_raw"):
            added = row[f"{side}_round_ms"] - row["in_process_round_ms"]
            row[f"{side}_added_ms"] = added / at_once
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table."""
    lines = [
        (
            "| request | at once | in process | served, httpx client | served, bare client "
            "| added per request (httpx) | added per request (bare: the server's share) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['mode']} | {r['concurrency']} | {r['in_process_ms']:.2f} ms | "
        f"{r['served_ms']:.2f} ms | {r['served_raw_ms']:.2f} ms | "
        f"{r['served_added_ms']:.2f} ms | **{r['served_raw_added_ms']:.2f} ms** |"
        for r in rows
    ]
    lines.append("")
    lines.append(
        "Latencies are medians of each request's own; at 32 at once, a request waits for "
        "the others' work too, so the added time per request is the median round's added "
        "time shared among its 32 requests."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table (or, with ``--serve``, be the served side)."""
    # Taken before the run: the code that ran is the checkout's as it started.
    started = provenance(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=60, help="measured rounds of each row")
    parser.add_argument("--out", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(0)
        return 0
    with Served() as side:
        times = asyncio.run(measure(args.rounds, side.url))
    rows = summary(times)
    print(markdown(rows))
    for row in rows:
        if row["served_raw_added_ms"] > TARGET_MS:
            print(
                f"over the {TARGET_MS} ms target: {row['mode']} at {row['concurrency']}: "
                f"{row['served_raw_added_ms']:.2f} ms a request",
                file=sys.stderr,
            )
    if args.out:
        report = {
            "settings": {"rounds": args.rounds, "concurrency": CONCURRENCY},
            "provenance": started,
            "rows": rows,
        }
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
