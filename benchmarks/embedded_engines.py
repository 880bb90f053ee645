"""Embedded engines: how fast each way of serving SmolLM2 answers a 3-proposer layer.

A MoA layer's 3 proposers send the same prompt to the embedded server at
once. llama-cpp-python's server answers one request at a time (its
``get_llama_proxy`` holds an ``anyio.Lock`` for the whole completion), so a
layer takes about 3 lone requests. This measures the alternatives:

- ``today``: one server exactly as ``LlamaServer`` starts it (all cores);
- ``today-passive`` / ``lcp-t1`` / ``lcp-t2-b64``: llama-cpp-python's own
  settings (OpenMP threads that sleep rather than spin when idle; 1 thread;
  a small ``n_batch``/``n_ubatch``, only when named);
- ``procs2-t1`` / ``procs3-t1``: 2 or 3 llama-cpp-python servers of one
  thread each, a layer's requests spread over them round-robin (``procs3-t2``,
  3 servers of all cores each, only when named: oversubscribed);
- ``llama-server-p3``: llama.cpp's own ``llama-server`` with ``--parallel 3``
  (continuous batching), when ``--llama-server PATH`` names a binary.

Each round times, per option and ``max_tokens``, one lone streamed request
(the baseline) and one layer (3 concurrent streamed requests, wall time);
options take turns within a round, in an order that rotates each round, so
the machine's other work hits all of them alike. It reports medians, the
layer's ratio to ``today`` (above 1: faster), the layer's tokens per second,
each option's start-up time, and whether a stream carries token usage when
asked (``stream_options.include_usage``).

Usage::

    .venv/bin/python benchmarks/embedded_engines.py [--rounds 5] [--max-tokens 64 128]
        [--llama-server PATH] [--options today,procs3-t1,...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in {None, ""}:
    # Run as a script: the repository root is what makes langchain_moa importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from langchain_moa.bench.provenance import provenance
from langchain_moa.local.server import SMOLLM2_CHAT_FORMAT, LlamaServer, _free_port, smollm2_gguf

HOST = "127.0.0.1"
QUESTIONS = (
    "Why is the sky blue? Explain it to a curious ten-year-old.",
    "What are the main causes of the French Revolution?",
    "How does a refrigerator keep food cold?",
    "Give some tips for writing a good cover letter.",
    "Why do we have seasons on Earth?",
    "What is the difference between a virus and a bacterium?",
    "How do airplanes stay in the air?",
    "Describe how to make a simple vegetable soup.",
)
"""What MoA layer 1 proposers get: the user's question, as is.

Each layer (and each lone request) asks a question of its own, the same for
every option: llama-cpp-python reuses the cached prefix of its previous
prompt, so one question asked over and over would hide the prompt's cost.
Within a layer the 3 proposers share the prompt, as they do in MoA.
"""
PROPOSERS = 3
TEMPERATURE = 0.7
STARTUP_TIMEOUT_S = 120.0


@dataclass
class Option:
    """One way of serving the model: its processes' command lines, and what it is."""

    name: str
    what: str
    licence: str
    commands: list[list[str]] = field(default_factory=list)
    """Server processes to start; empty for ``today``, which ``LlamaServer`` starts."""
    ports: list[int] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    server: LlamaServer | None = None
    startup_s: float = 0.0
    rss_mb: float = 0.0
    usage_in_stream: bool | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables its processes get on top of this one's."""
    by_default: bool = True
    """Measured unless ``--options`` says otherwise."""

    def urls(self) -> list[str]:
        """Each process's chat completions endpoint."""
        return [f"http://{HOST}:{port}/v1/chat/completions" for port in self.ports]


def llama_cpp_python(port: int, threads: int, *extra: str, model: Path, n_ctx: int) -> list[str]:
    """llama-cpp-python's server as ``LlamaServer`` runs it, with ``extra`` arguments."""
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model), "--model_alias", "smollm2-135m-instruct",
        "--host", HOST, "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(threads),
        "--interrupt_requests", "False", "--chat_format", SMOLLM2_CHAT_FORMAT,
        *extra,
    ]  # fmt: skip


def build_options(args: argparse.Namespace) -> list[Option]:
    """The options named by ``--options`` (all that can run here by default)."""
    model, n_ctx, cores = smollm2_gguf(), 8192, os.cpu_count() or 1
    mit = "MIT (llama-cpp-python)"
    # The prompt's threads too (the server's default is all cores): one
    # thread per process never waits for another.
    one = ("--n_threads_batch", "1")

    def lcp(count: int, threads: int, *extra: str) -> list[list[str]]:
        return [
            llama_cpp_python(_free_port(HOST), threads, *extra, model=model, n_ctx=n_ctx)
            for _ in range(count)
        ]

    options = [
        Option("today", f"1 llama-cpp-python server, n_threads={cores} (LlamaServer)", mit),
        Option(
            "today-passive",
            f"as today, with OMP_WAIT_POLICY=PASSIVE (n_threads={cores})",
            mit,
            lcp(1, cores),
            # llama.cpp's CPU backend is built with OpenMP here, whose idle
            # threads spin for a while before they sleep.
            env={"OMP_WAIT_POLICY": "PASSIVE"},
        ),
        Option("lcp-t1", "1 llama-cpp-python server, n_threads=1", mit, lcp(1, 1, *one)),
        Option(
            "lcp-t2-b64",
            f"1 llama-cpp-python server, n_threads={cores}, n_batch=n_ubatch=64",
            mit,
            lcp(1, cores, "--n_batch", "64", "--n_ubatch", "64"),
            # A layer-1 prompt fits in one batch of either size.
            by_default=False,
        ),
        Option("procs2-t1", "2 llama-cpp-python servers, n_threads=1 each", mit, lcp(2, 1, *one)),
        Option("procs3-t1", "3 llama-cpp-python servers, n_threads=1 each", mit, lcp(3, 1, *one)),
        Option(
            "procs3-t2",
            f"3 llama-cpp-python servers, n_threads={cores} each (oversubscribed)",
            mit,
            lcp(3, cores),
            # Opt-in: more threads than cores, and llama.cpp's threads wait for
            # each other spinning; one 64-token request took minutes here.
            by_default=False,
        ),
    ]
    if args.llama_server:
        command = [
            args.llama_server, "-m", str(model), "--host", HOST, "--port", str(_free_port(HOST)),
            # The context is shared by the slots: 3 of today's windows.
            "-c", str(n_ctx * PROPOSERS), "--parallel", str(PROPOSERS),
            "-t", str(cores), "-tb", str(cores), "--jinja", "--no-webui",
        ]  # fmt: skip
        what = f"llama.cpp llama-server, --parallel 3 (continuous batching), {cores} threads"
        options.append(Option("llama-server-p3", what, args.llama_server_licence, [command]))
    chosen = args.options.split(",") if args.options else [o.name for o in options if o.by_default]
    unknown = set(chosen) - {o.name for o in options}
    if unknown:
        msg = f"unknown options: {sorted(unknown)}"
        raise SystemExit(msg)
    return [o for o in options if o.name in chosen]


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Any) -> None:
    """Wait until ``url`` answers (``LlamaServer``'s own test: ``/v1/models``)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            msg = f"server exited: {process.args!r}\n{log.read().decode(errors='replace')[-2000:]}"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own http URL
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    msg = f"server did not answer in {STARTUP_TIMEOUT_S}s: {process.args!r}"
    raise RuntimeError(msg)


def start(option: Option) -> None:
    """Start ``option``'s servers, all at once, and time until every one answers."""
    began = time.monotonic()
    if not option.commands:
        option.server = LlamaServer().start()
        option.ports = [int(option.server.port or 0)]
    else:
        logs = []
        for command in option.commands:
            log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
            logs.append(log)
            env = {**os.environ, **option.env}
            option.processes.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
            )
            option.ports.append(int(command[command.index("--port") + 1]))
        for process, log, port in zip(option.processes, logs, option.ports, strict=True):
            wait_ready(f"http://{HOST}:{port}/v1/models", process, log)
    option.startup_s = time.monotonic() - began


def resident_mb(option: Option) -> float:
    """Memory the option's server processes hold (their resident sets), in MiB."""
    pids = [option.server.pid] if option.server else [p.pid for p in option.processes]
    total = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        total += next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
    return total / 1024


def stop(option: Option) -> None:
    """Stop ``option``'s servers."""
    if option.server is not None:
        option.server.stop()
    for process in option.processes:
        process.terminate()
    for process in option.processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def question(number: int) -> str:
    """The ``number``-th question: a distinct prompt (its number comes first)."""
    return f"Question {number}. {QUESTIONS[number % len(QUESTIONS)]}"


async def stream(
    client: httpx.AsyncClient,
    url: str,
    max_tokens: int,
    prompt: str,
    *,
    usage: bool = False,
) -> tuple[int, dict[str, Any] | None]:
    """One streamed chat completion: (content chunks received, the usage it carried)."""
    body: dict[str, Any] = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": TEMPERATURE,
        "stream": True,
    }
    if usage:
        body["stream_options"] = {"include_usage": True}
    chunks, reported = 0, None
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line.removeprefix("data: "))
            reported = data.get("usage") or reported
            for choice in data.get("choices") or []:
                chunks += bool((choice.get("delta") or {}).get("content"))
    return chunks, reported


async def lone(
    client: httpx.AsyncClient, option: Option, max_tokens: int, prompt: str
) -> tuple[float, int]:
    """One request alone: (seconds, tokens)."""
    began = time.perf_counter()
    tokens, _ = await stream(client, option.urls()[0], max_tokens, prompt)
    return time.perf_counter() - began, tokens


async def layer(
    client: httpx.AsyncClient, option: Option, max_tokens: int, prompt: str
) -> tuple[float, int]:
    """A layer's proposers at once, spread round-robin over the processes: (seconds, tokens)."""
    urls = option.urls()
    began = time.perf_counter()
    results = await asyncio.gather(
        *(stream(client, urls[i % len(urls)], max_tokens, prompt) for i in range(PROPOSERS))
    )
    return time.perf_counter() - began, sum(tokens for tokens, _ in results)


def add(option: Option, key: str, value: float) -> None:
    """Record one sample."""
    option.samples.setdefault(key, []).append(value)


async def measure(options: list[Option], rounds: int, max_tokens: list[int]) -> None:
    """Warm every process, ask for usage once, then run the interleaved rounds."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(timeout=600, limits=limits, trust_env=False) as client:
        for option in options:
            for url in option.urls():
                await stream(client, url, 8, "Hi")  # the first request pays for warm-up
            _, usage = await stream(client, option.urls()[0], 8, "Hi", usage=True)
            option.usage_in_stream = usage is not None
        number = 0
        for round_ in range(rounds):
            turn = options[round_ % len(options) :] + options[: round_ % len(options)]
            for tokens in max_tokens:
                number += 2
                for option in turn:
                    seconds, count = await lone(client, option, tokens, question(number))
                    add(option, f"lone{tokens}", seconds)
                    add(option, f"lone{tokens}_tokens", count)
                    seconds, count = await layer(client, option, tokens, question(number + 1))
                    add(option, f"layer{tokens}", seconds)
                    add(option, f"layer{tokens}_tokens", count)
                    print(
                        f"round {round_ + 1} {option.name} {tokens}: {seconds:.2f}s",
                        file=sys.stderr,
                    )


def summarise(options: list[Option], max_tokens: list[int]) -> list[dict[str, Any]]:
    """Medians per option and ``max_tokens``, with the layer's ratio to ``today``."""
    rows = []
    base = {o.name: o for o in options}.get("today")
    for tokens in max_tokens:
        done = [o for o in options if f"layer{tokens}" in o.samples]
        today = statistics.median(base.samples[f"layer{tokens}"]) if base in done else None
        for option in done:
            median = {k: statistics.median(v) for k, v in option.samples.items()}
            layer_s = median[f"layer{tokens}"]
            rows.append({
                "rounds": len(option.samples[f"layer{tokens}"]),
                "option": option.name,
                "what": option.what,
                "licence": option.licence,
                "max_tokens": tokens,
                "lone_s": round(median[f"lone{tokens}"], 3),
                "layer_s": round(layer_s, 3),
                "layer_over_lone": round(layer_s / median[f"lone{tokens}"], 2),
                "layer_tokens": median[f"layer{tokens}_tokens"],
                "layer_tok_s": round(median[f"layer{tokens}_tokens"] / layer_s, 1),
                "speedup_vs_today": round(today / layer_s, 2) if today else None,
                "startup_s": round(option.startup_s, 2),
                "rss_mb": round(option.rss_mb),
                "usage_in_stream": option.usage_in_stream,
                "layer_samples_s": [round(s, 3) for s in option.samples[f"layer{tokens}"]],
            })  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    head = (
        "| option | max_tokens | lone s | layer s | layer/lone | layer tok/s "
        "| speed-up vs today | start s | RSS MiB | usage in stream |"
    )
    lines = [head, "|---" * 10 + "|"]
    lines.extend(
        f"| {r['option']} | {r['max_tokens']} | {r['lone_s']:.2f} | {r['layer_s']:.2f} "
        f"| {r['layer_over_lone']:.2f} | {r['layer_tok_s']:.0f} | {r['speedup_vs_today']}x "
        f"| {r['startup_s']:.1f} | {r['rss_mb']} | {'yes' if r['usage_in_stream'] else 'no'} |"
        for r in rows
    )
    return "\n".join(lines)


def markdown(report: Mapping[str, Any]) -> str:
    """The table of a run ``--out`` wrote (its own rendering, for ``benchmarks/figures.py``)."""
    return table(report["rows"])


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; print the table, write JSON with ``--out``."""
    # Taken before the run: the code that ran is the checkout's as it started.
    started = provenance(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--options", help="comma-separated option names; all by default")
    parser.add_argument("--llama-server", help="a llama.cpp llama-server binary to measure")
    parser.add_argument("--llama-server-licence", default="MIT (llama.cpp)")
    parser.add_argument("--out", type=Path, help="write the rows and settings as JSON here")
    args = parser.parse_args(argv)
    options = build_options(args)
    try:
        for option in options:
            start(option)
            print(f"started {option.name} in {option.startup_s:.1f}s", file=sys.stderr)
        # Stopped early (Ctrl-C, or SIGTERM from a timeout): report the rounds done.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            asyncio.run(measure(options, args.rounds, args.max_tokens))
        except KeyboardInterrupt:
            print("interrupted: the table has the rounds done", file=sys.stderr)
        for option in options:
            option.rss_mb = resident_mb(option)
    finally:
        for option in options:
            stop(option)
    rows = summarise(options, args.max_tokens)
    print(table(rows))
    if args.out:
        settings = {
            "rounds": args.rounds,
            "options": [option.name for option in options],
            "temperature": TEMPERATURE,
            "proposers": PROPOSERS,
            "max_tokens": args.max_tokens,
        }
        report = {"settings": settings, "provenance": started, "rows": rows}
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
