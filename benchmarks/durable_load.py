"""What keeping a durable ChatMoA's steps in PostgreSQL costs, under 50 threads at once.

An outer LangGraph graph (one node, which calls a durable ``ChatMoA`` of three
proposers and an aggregator) answers ``--threads`` questions at once, each on a
thread of its own: once compiled with LangGraph's ``AsyncPostgresSaver`` (a
connection pool, as LangGraph Server keeps one) on a real PostgreSQL server, and
once with no checkpointer, where the same ``ChatMoA`` saves nothing. Every model
is a ``ChatOpenAI`` client of the benchmark's scheduled server, in a child
process (``langchain_moa.bench.process.ServerProcess``), each call's first token
after ``--call-s`` seconds. The two modes alternate round by round (the order
swapped each round), so both meet the same machine.

Per mode: the threads answered (an answer, 4 call records, none failed), the
median and 95th-percentile seconds from a thread's start to its answer, and the
wall time of the whole round; then the ratio of the medians. With the checkpointer
it also checks that each thread's saved state holds its question and answer.

Without ``--postgres URL``, a PostgreSQL server of Debian's is started for the run
on 127.0.0.1 in a temporary folder (as the tests do: ``make postgres`` installs it).

Usage::

    .venv/bin/python benchmarks/durable_load.py [--threads 50] [--rounds 3]
        [--call-s 0.2] [--pool 20] [--postgres URL] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from langchain_moa import ChatMoA, get_calls
from langchain_moa.bench.process import ServerProcess
from langchain_moa.bench.provenance import provenance
from langchain_moa.bench.server import Behaviour
from langchain_moa.openai_compatible import NO_KEY, openai_compatible_model

ROOT = Path(__file__).parents[1]
PROPOSERS = 3
MODES = ("postgres", "none")


def stack(base_url: str) -> ChatMoA:
    """Three proposers and an aggregator, each a client of the scheduled server."""

    def model(name: str) -> Any:
        return openai_compatible_model(name, base_url=base_url, api_key=NO_KEY, max_retries=0)

    return ChatMoA(
        proposers=[model(f"proposer.p{i}") for i in range(PROPOSERS)],
        aggregator=model("aggregator"),
        layers=2,
        durable=True,
    )


def outer_graph(moa: ChatMoA, checkpointer: AsyncPostgresSaver | None) -> CompiledStateGraph:
    """``START -> answer``: the node appends the stack's answer."""

    async def answer(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await moa.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    return builder.compile(checkpointer=checkpointer)


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    """``url``, or a server started for the run (the tests' own way of running one)."""
    if url:
        yield url
        return
    sys.path.insert(0, str(ROOT))
    from tests.integration_tests.postgres import running_postgres  # noqa: PLC0415

    with running_postgres() as server:
        yield server.url


@contextlib.asynccontextmanager
async def saver(url: str, pool_size: int) -> AsyncIterator[AsyncPostgresSaver]:
    """LangGraph's Postgres checkpointer over a pool, its tables made."""
    # The settings AsyncPostgresSaver.from_conn_string uses for its one connection.
    options = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(
        url, min_size=pool_size, max_size=pool_size, kwargs=options, open=False
    ) as pool:
        checkpointer = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await checkpointer.setup()
        yield checkpointer


async def one_thread(graph: CompiledStateGraph, thread: str) -> dict[str, Any]:
    """One question on its own thread: its seconds and whether it was answered whole."""
    config = {"configurable": {"thread_id": thread}}
    started = time.perf_counter()
    try:
        result = await graph.ainvoke({"messages": [HumanMessage(f"[{thread}] Why?")]}, config)
    except Exception as error:  # noqa: BLE001 - counted and shown, not hidden
        return {"thread": thread, "seconds": time.perf_counter() - started, "error": repr(error)}
    seconds = time.perf_counter() - started
    answer = result["messages"][-1]
    calls = get_calls(answer)
    whole = bool(answer.text) and len(calls) == PROPOSERS + 1
    return {
        "thread": thread,
        "seconds": seconds,
        "answered": whole and all(call["error"] is None for call in calls),
        "error": None,
    }


async def saved_whole(graph: CompiledStateGraph, threads: Sequence[str]) -> int:
    """How many threads the database holds finished, with their question and answer."""
    count = 0
    for thread in threads:
        state = await graph.aget_state({"configurable": {"thread_id": thread}})
        kinds = [m.type for m in state.values.get("messages", [])]
        count += state.next == () and kinds == ["human", "ai"]
    return count


async def measure(
    base_url: str, url: str, *, threads: int, rounds: int, pool_size: int
) -> tuple[list[dict[str, Any]], str]:
    """``rounds`` rounds of each mode, alternating, after one unmeasured round of each.

    Returns the runs and the PostgreSQL server's version.
    """
    moa = stack(base_url)
    runs = []
    async with saver(url, pool_size) as checkpointer:
        async with checkpointer.conn.connection() as connection:  # type: ignore[union-attr]
            row = await (await connection.execute("SHOW server_version")).fetchone()
        version = str(row["server_version"])
        graphs = {"postgres": outer_graph(moa, checkpointer), "none": outer_graph(moa, None)}
        for number in range(rounds + 1):
            for mode in MODES if number % 2 else MODES[::-1]:
                names = [f"r{number}-{mode}-t{i}" for i in range(threads)]
                started = time.perf_counter()
                done = await asyncio.gather(*(one_thread(graphs[mode], n) for n in names))
                wall_s = time.perf_counter() - started
                saved = await saved_whole(graphs[mode], names) if mode == "postgres" else None
                if number:  # the first round warms connections, imports and the pool
                    runs.append(
                        {
                            "mode": mode,
                            "round": number,
                            "wall_s": wall_s,
                            "saved": saved,
                            "threads": done,
                        }
                    )
    return runs, version


def _p95(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def summary(runs: Sequence[Mapping[str, Any]], threads: int) -> dict[str, dict[str, Any]]:
    """Per mode, over every round: answered, median and p95 per thread, median wall."""
    table = {}
    for mode in MODES:
        mine = [run for run in runs if run["mode"] == mode]
        seconds = [t["seconds"] for run in mine for t in run["threads"]]
        table[mode] = {
            "threads": threads * len(mine),
            "answered": sum(bool(t.get("answered")) for run in mine for t in run["threads"]),
            "saved": None if mode == "none" else sum(run["saved"] for run in mine),
            "median_s": statistics.median(seconds),
            "p95_s": _p95(seconds),
            "wall_s": statistics.median(run["wall_s"] for run in mine),
        }
    return table


def markdown(table: Mapping[str, Mapping[str, Any]], threads: int) -> str:
    """A row per mode, then the ratio of the two."""
    header = (
        "| checkpointer | threads answered | per thread (median) | per thread (p95) "
        f"| {threads} threads (wall, median) |"
    )
    lines = [header, "|---|---|---|---|---|"]
    names = {"postgres": "PostgreSQL (AsyncPostgresSaver)", "none": "none"}
    for mode in MODES:
        row = table[mode]
        lines.append(
            f"| {names[mode]} | {row['answered']} of {row['threads']} | {row['median_s']:.3f} s "
            f"| {row['p95_s']:.3f} s | {row['wall_s']:.2f} s |"
        )
    pg, none = table["postgres"], table["none"]
    ratios = [pg[key] / none[key] for key in ("median_s", "p95_s", "wall_s")]
    lines.append(f"| ratio | | {ratios[0]:.2f}x | {ratios[1]:.2f}x | {ratios[2]:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print its table; 1 if a thread was not answered or not saved."""
    # Taken before the run: the code that ran is the checkout's as it started.
    started = provenance(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, default=50, help="threads answered at once")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds of each mode")
    parser.add_argument("--call-s", type=float, default=0.2, help="each call's first token")
    parser.add_argument("--pool", type=int, default=20, help="PostgreSQL connections")
    parser.add_argument("--postgres", metavar="URL", help="a server to use instead of a new one")
    parser.add_argument("--out", metavar="PATH", help="also write every thread's run as JSON")
    args = parser.parse_args(argv)
    logging.getLogger("langchain_moa").setLevel(logging.ERROR)
    behaviours = {
        name: Behaviour.fixed(args.call_s, tokens=32) for name in ("proposer", "aggregator")
    }
    with ServerProcess(behaviours) as server, postgres(args.postgres) as url:
        runs, version = asyncio.run(
            measure(
                server.base_url, url, threads=args.threads, rounds=args.rounds,
                pool_size=args.pool,
            )
        )  # fmt: skip
    table = summary(runs, args.threads)
    print(markdown(table, args.threads))
    found = [
        f"{mode}: {row['answered']} of {row['threads']} threads answered whole"
        for mode, row in table.items()
        if row["answered"] != row["threads"]
    ]
    if table["postgres"]["saved"] != table["postgres"]["threads"]:
        found.append(f"postgres: {table['postgres']['saved']} threads saved whole")
    for problem in found:
        print(f"unexpected: {problem}", file=sys.stderr)
    if args.out:
        settings = {**vars(args), "postgres": "given" if args.postgres else "started"}
        report = {
            "settings": settings,
            "provenance": started,
            "postgresql": version,
            "summary": table,
            "runs": runs,
            "problems": found,
        }
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
