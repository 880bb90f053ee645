"""Tokens and time ``fanout="per_turn"`` saves on an agent run with three tool calls.

``langchain.agents.create_agent`` drives ``ChatMoA`` over one user question:
its aggregator calls a tool three times, then answers. Every model is a real
``ChatOpenAI`` client of the benchmark's scheduled server, in a child process
(``langchain_moa.bench.process.ServerProcess``): the paper's shape, 2 proposer
layers of 6, calls of 0.25-0.35 s, and an aggregator that calls the first tool
offered while the turn holds fewer than 3 tool results. With ``every_call``
the proposers run on each of the agent's 4 model calls; with ``per_turn`` on
the first only, the other 3 going to the aggregator alone with the turn's
references. The modes alternate round by round (the order swapped each round)
on the same questions, so both meet the same load.

Tokens are the answers' ``usage_metadata`` summed over the agent's AI
messages, checked against every call's own usage (``get_calls``); the model
calls are the accounting's, checked against the server's own records.

With ``--through-server`` the same two stacks are served by ``moa serve``'s
app (uvicorn on 127.0.0.1, ids ``every_call`` and ``per_turn``) and the agent's
model is ``ChatOpenAI`` pointed at it, as an agent framework would use a
served stack: the tool loop's steps are separate HTTP requests, and the
server keeps the turn's references between them. The model calls are then
the scheduled server's records, and the tokens the served answers' ``usage``
(each the whole stack's).

Usage::

    .venv/bin/python benchmarks/fanout.py [--rounds 5] [--layers 2] [--proposers 6]
        [--tool-calls 3] [--through-server] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from langchain_moa import ChatMoA, get_calls
from langchain_moa.bench.process import BenchServer, ServerProcess
from langchain_moa.bench.provenance import provenance
from langchain_moa.bench.server import Behaviour
from langchain_moa.bench.serving import BackgroundServer
from langchain_moa.openai_compatible import NO_KEY, openai_compatible_model
from langchain_moa.stacks.spec import Fanout

PROPOSER = "proposer"
AGENT = "agent"
MODES: tuple[Fanout, ...] = get_args(Fanout)


def behaviours(
    tool_calls: int = 3, first_token_s: tuple[float, float] = (0.25, 0.35), tokens: int = 64
) -> dict[str, Behaviour]:
    """Proposers answering ``tokens`` words; an aggregator that calls ``tool_calls`` tools."""
    return {
        PROPOSER: Behaviour(first_token_s=first_token_s, tokens=tokens),
        AGENT: Behaviour(first_token_s=first_token_s, tokens=tokens, tool_calls=tool_calls),
    }


@tool
def lookup(item: str) -> str:
    """Look an item up in the catalogue."""
    return f"{item}: in stock"


def stack(base_url: str, fanout: Fanout, *, layers: int, proposers: int) -> ChatMoA:
    """ChatMoA with every model a client of the server at ``base_url``."""

    def model(name: str) -> Any:
        return openai_compatible_model(name, base_url=base_url, api_key=NO_KEY, max_retries=0)

    return ChatMoA(
        proposer_layers=[
            [model(f"{PROPOSER}.L{n}.p{i}") for i in range(proposers)] for n in range(layers)
        ],
        aggregator=model(f"{AGENT}.agg"),
        fanout=fanout,
    )


def question(number: int) -> str:
    """The user's question: its ``[q<N>]`` names the run in the server's records."""
    return f"[q{number}] Are the bolts, nuts and washers for order {number} all in stock?"


async def _timed(
    agent: Any, server: BenchServer, number: int
) -> tuple[list[AIMessage], list[Any], float]:
    """The agent's answers to question ``number``, the server's records of it, its seconds."""
    server.reset()
    started = time.perf_counter()
    result = await agent.ainvoke({"messages": [HumanMessage(question(number))]})
    wall_s = time.perf_counter() - started
    records = server.reset()
    return [m for m in result["messages"] if isinstance(m, AIMessage)], records, wall_s


async def run_agent(
    server: BenchServer, fanout: Fanout, *, layers: int, proposers: int, number: int
) -> dict[str, Any]:
    """One agent run: its model calls, tokens, wall time and the server's count of requests."""
    agent = create_agent(
        model=stack(server.base_url, fanout, layers=layers, proposers=proposers), tools=[lookup]
    )
    answers, records, wall_s = await _timed(agent, server, number)
    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    accounted = dict.fromkeys(usage, 0)
    calls = 0
    for answer in answers:
        reported: Mapping[str, Any] = answer.usage_metadata or {}
        for key in usage:
            usage[key] += reported.get(key, 0)
        calls += answer.response_metadata["accounting"]["total"]["calls"]
        # Each call's usage as its own response reported it: the sums must agree.
        for call in get_calls(answer):
            for key in accounted:
                accounted[key] += (call["usage"] or {}).get(key, 0)
    return {
        "fanout": fanout,
        "question": number,
        "model_calls": calls,
        "server_requests": len(records),
        "proposer_requests": sum(r.behaviour == PROPOSER for r in records),
        "aggregator_requests": sum(r.behaviour == AGENT for r in records),
        "tool_calls": sum(len(a.tool_calls) for a in answers),
        "answer": answers[-1].text if answers else "",
        **usage,
        "usage_matches_calls": usage == accounted,
        "wall_s": wall_s,
    }


def serve_stacks(server: BenchServer, *, layers: int, proposers: int) -> BackgroundServer:
    """``moa serve``'s app serving both modes' stacks (by their names), started."""
    from langchain_moa.serve.app import create_app  # noqa: PLC0415 - the serve extra

    stacks = {
        fanout: stack(server.base_url, fanout, layers=layers, proposers=proposers)
        for fanout in MODES
    }
    served = BackgroundServer(create_app(dict(stacks)), name="moa-serve")
    served.start()
    return served


async def run_served_agent(
    server: BenchServer, served_url: str, fanout: Fanout, *, number: int
) -> dict[str, Any]:
    """One agent run whose model is the stack served at ``served_url``, over HTTP."""
    model = ChatOpenAI(base_url=served_url, api_key=NO_KEY, model=fanout, max_retries=0)
    agent = create_agent(model=model, tools=[lookup])
    answers, records, wall_s = await _timed(agent, server, number)
    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    for answer in answers:
        reported: Mapping[str, Any] = answer.usage_metadata or {}
        for key in usage:
            usage[key] += reported.get(key, 0)
    return {
        "fanout": fanout,
        "question": number,
        # Over HTTP the stack's own accounting stays on the server: its requests count.
        "model_calls": len(records),
        "server_requests": len(records),
        "proposer_requests": sum(r.behaviour == PROPOSER for r in records),
        "aggregator_requests": sum(r.behaviour == AGENT for r in records),
        "tool_calls": sum(len(a.tool_calls) for a in answers),
        "answer": answers[-1].text if answers else "",
        **usage,
        "usage_matches_calls": None,
        "wall_s": wall_s,
    }


async def measure(
    server: BenchServer,
    *,
    rounds: int,
    layers: int,
    proposers: int,
    served_url: str | None = None,
) -> list[dict[str, Any]]:
    """``rounds`` runs of each mode, alternating, after one unmeasured run of each.

    With ``served_url``, the agent's model is the stack served there (``serve_stacks``).
    """
    runs = []
    for number in range(rounds + 1):
        # Swapped each round: neither mode always runs second on a warmer machine.
        order = MODES if number % 2 else MODES[::-1]
        for fanout in order:
            if served_url is None:
                run = await run_agent(
                    server, fanout, layers=layers, proposers=proposers, number=number
                )
            else:
                run = await run_served_agent(server, served_url, fanout, number=number)
            if number:  # the first round warms connections and imports
                runs.append(run)
    return runs


def summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per mode: the medians of every measured quantity."""
    keys = ("model_calls", "input_tokens", "output_tokens", "total_tokens", "wall_s")
    return {
        mode: {key: statistics.median(r[key] for r in runs if r["fanout"] == mode) for key in keys}
        for mode in MODES
    }


def problems(
    runs: Sequence[Mapping[str, Any]], *, layers: int, proposers: int, tool_calls: int
) -> list[str]:
    """What in the runs is not as the structure says it must be."""
    steps = tool_calls + 1
    expected = {
        "every_call": steps * (layers * proposers + 1),
        "per_turn": layers * proposers + steps,
    }
    found = []
    for run in runs:
        name = f"{run['fanout']} q{run['question']}"
        if not run["model_calls"] == run["server_requests"] == expected[run["fanout"]]:
            found.append(
                f"{name}: {run['model_calls']} calls accounted, {run['server_requests']} "
                f"served, {expected[run['fanout']]} expected"
            )
        if run["tool_calls"] != tool_calls or not run["answer"]:
            found.append(f"{name}: {run['tool_calls']} tool calls, answer {run['answer']!r}")
        # None: served, where the calls' own usage stays on the server.
        if run["usage_matches_calls"] is False:
            found.append(f"{name}: usage_metadata differs from the sum of its calls' usage")
    return found


def _saved(every: float, per_turn: float, unit: str = "") -> str:
    saved = every - per_turn
    share = saved / every * 100 if every else 0.0
    amount = f"{saved:.2f}{unit}" if unit else f"{saved:,.0f}"
    return f"{amount} ({share:.0f}%)"


def markdown(medians: Mapping[str, Mapping[str, float]]) -> str:
    """The table: a row per mode, then what ``per_turn`` saves."""
    lines = [
        "| fanout | model calls | input tokens | output tokens | total tokens | wall (median) |",
        "|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        m = medians[mode]
        lines.append(
            f"| {mode} | {m['model_calls']:.0f} | {m['input_tokens']:,.0f} | "
            f"{m['output_tokens']:,.0f} | {m['total_tokens']:,.0f} | {m['wall_s']:.2f} s |"
        )
    every, per_turn = medians["every_call"], medians["per_turn"]
    cells = [
        _saved(every[k], per_turn[k])
        for k in ("model_calls", "input_tokens", "output_tokens", "total_tokens")
    ]
    cells.append(_saved(every["wall_s"], per_turn["wall_s"], " s"))
    lines.append(f"| saved by per_turn | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print its table; 1 if a run's structure is not as expected."""
    # Taken before the run: the code that ran is the checkout's as it started.
    started = provenance(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured runs of each mode")
    parser.add_argument("--layers", type=int, default=2, help="proposer layers")
    parser.add_argument("--proposers", type=int, default=6, help="proposers per layer")
    parser.add_argument("--tool-calls", type=int, default=3, help="tool calls before the answer")
    parser.add_argument(
        "--through-server",
        action="store_true",
        help="the agent's model is ChatOpenAI over moa serve's app, not ChatMoA in process",
    )
    parser.add_argument("--out", metavar="PATH", help="also write every run as JSON")
    args = parser.parse_args(argv)
    logging.getLogger("langchain_moa").setLevel(logging.ERROR)
    shape = {"layers": args.layers, "proposers": args.proposers}
    with ServerProcess(behaviours(args.tool_calls)) as server:
        served = serve_stacks(server, **shape) if args.through_server else None
        try:
            url = served.base_url if served else None
            runs = asyncio.run(measure(server, rounds=args.rounds, served_url=url, **shape))
        finally:
            if served is not None:
                served.stop()
    medians = summary(runs)
    print(markdown(medians))
    found = problems(runs, tool_calls=args.tool_calls, **shape)
    for problem in found:
        print(f"unexpected: {problem}", file=sys.stderr)
    if args.out:
        report = {
            "settings": vars(args),
            "provenance": started,
            "medians": medians,
            "runs": runs,
            "problems": found,
        }
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
