"""A worker process for the durable-ChatMoA tests: one outer graph run on a real database.

    python -m tests.integration_tests.durable_worker DATABASE BASE_URL THREAD OUT [--async]

``DATABASE`` is ``sqlite:PATH`` or a ``postgresql://`` URI. The outer graph has
one node, ``answer``, which calls a durable ``ChatMoA`` (three proposers and an
aggregator, all ``ChatOpenAI`` over ``BASE_URL``) on the thread's messages. The
worker starts the thread with ``QUESTION`` or, when the thread has a run that did
not finish, resumes it (``invoke(None, config)``); then it writes the thread's
messages, as LangChain dicts, to ``OUT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, messages_to_dict
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from langchain_moa import ChatMoA

PROPOSERS = ("proposer-a", "proposer-b", "proposer-c")
AGGREGATOR = "aggregator"
QUESTION = "Which colour is the sky on a clear day?"


def stack(base_url: str, **options: Any) -> ChatMoA:
    """The durable stack: each model a distinct id, so the server's log tells them apart."""

    def model(name: str) -> ChatOpenAI:
        return ChatOpenAI(model=name, base_url=base_url, api_key="unused", max_retries=0)

    return ChatMoA(
        proposers=[model(name) for name in PROPOSERS],
        aggregator=model(AGGREGATOR),
        layers=2,
        durable=True,
        **options,
    )


def outer_graph(
    moa: ChatMoA, checkpointer: BaseCheckpointSaver, *, is_async: bool = False
) -> CompiledStateGraph:
    """``START -> answer``: the node appends ``moa``'s answer to the messages."""

    def answer(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [moa.invoke(state["messages"])]}

    async def aanswer(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await moa.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", aanswer if is_async else answer)
    builder.add_edge(START, "answer")
    return builder.compile(checkpointer=checkpointer)


@contextlib.contextmanager
def saver(database: str) -> Iterator[BaseCheckpointSaver]:
    """LangGraph's SQLite or PostgreSQL checkpointer for ``database``, its tables made."""
    if database.startswith("sqlite:"):
        from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: PLC0415

        with SqliteSaver.from_conn_string(database.removeprefix("sqlite:")) as sqlite:
            yield sqlite
        return
    from langgraph.checkpoint.postgres import PostgresSaver  # noqa: PLC0415

    with PostgresSaver.from_conn_string(database) as postgres:
        postgres.setup()
        yield postgres


@contextlib.asynccontextmanager
async def async_saver(database: str) -> AsyncIterator[BaseCheckpointSaver]:
    """`saver`, async: ``AsyncSqliteSaver`` or ``AsyncPostgresSaver``."""
    if database.startswith("sqlite:"):
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: PLC0415

        async with AsyncSqliteSaver.from_conn_string(database.removeprefix("sqlite:")) as db:
            yield db
        return
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver  # noqa: PLC0415

    async with AsyncPostgresSaver.from_conn_string(database) as postgres:
        await postgres.setup()
        yield postgres


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def run(database: str, base_url: str, thread: str) -> list[BaseMessage]:
    """Start or resume the thread; its messages."""
    with saver(database) as checkpointer:
        graph = outer_graph(stack(base_url), checkpointer)
        config = _config(thread)
        waiting = graph.get_state(config).next
        result = graph.invoke(None if waiting else {"messages": [("user", QUESTION)]}, config)
        return result["messages"]


async def arun(database: str, base_url: str, thread: str) -> list[BaseMessage]:
    """`run`, async."""
    async with async_saver(database) as checkpointer:
        graph = outer_graph(stack(base_url), checkpointer, is_async=True)
        config = _config(thread)
        waiting = (await graph.aget_state(config)).next
        given = None if waiting else {"messages": [("user", QUESTION)]}
        result = await graph.ainvoke(given, config)
        return result["messages"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database")
    parser.add_argument("base_url")
    parser.add_argument("thread")
    parser.add_argument("out", type=Path)
    parser.add_argument("--async", dest="is_async", action="store_true")
    args = parser.parse_args()
    if args.is_async:
        messages = asyncio.run(arun(args.database, args.base_url, args.thread))
    else:
        messages = run(args.database, args.base_url, args.thread)
    args.out.write_text(json.dumps(messages_to_dict(messages)))


if __name__ == "__main__":
    main()
