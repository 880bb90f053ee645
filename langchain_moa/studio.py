"""The MoA graph on the embedded model, for ``langgraph dev`` and LangGraph Studio.

``langgraph.json`` at the repository root serves ``graph`` as the ``moa``
assistant and mounts ``app``, whose only job is its lifespan::

    langgraph dev --no-browser

Importing this module starts nothing: the shared llama.cpp server
(SmolLM2-135M-Instruct on a free 127.0.0.1 port) starts on the graph's first
model call. It stops when the dev server shuts down (``app``'s lifespan) and,
anywhere else, when the interpreter exits. The graph is compiled
without a checkpointer: the dev server supplies its own, so a Studio thread
keeps its conversation, and every run's ``calls`` (each tagged with its
``turn``), across runs.

Environment:
    MOA_STUDIO_MAX_TOKENS: longest answer of each model call (default 256).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from langgraph.graph.state import CompiledStateGraph
from starlette.applications import Starlette

from langchain_moa.graph import build_moa_graph
from langchain_moa.local import stop_all
from langchain_moa.stacks import build_stack
from langchain_moa.stacks.presets import local_spec

MAX_TOKENS_ENV = "MOA_STUDIO_MAX_TOKENS"
"""Environment variable: ``max_tokens`` of every call of the Studio graph."""
DEFAULT_STUDIO_MAX_TOKENS = 256
"""Short enough that a run on a laptop's CPU takes seconds, not minutes."""


def studio_max_tokens() -> int:
    """``max_tokens`` for the Studio graph: ``MOA_STUDIO_MAX_TOKENS`` or 256.

    Raises:
        ValueError: The variable is set but is not a positive integer.
    """
    raw = os.environ.get(MAX_TOKENS_ENV, "").strip()
    if not raw:
        return DEFAULT_STUDIO_MAX_TOKENS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"{MAX_TOKENS_ENV} must be a positive integer, got {raw!r}"
        raise ValueError(msg)
    return value


def build_studio_graph() -> CompiledStateGraph:
    """The embedded MoA stack's graph (3 proposers, an aggregator), no checkpointer."""
    stack = build_stack(local_spec(max_tokens=studio_max_tokens()))
    return build_moa_graph(stack.layers, stack.aggregator, name="moa")


graph = build_studio_graph()
"""What ``langgraph.json`` serves as the ``moa`` graph."""


@contextlib.asynccontextmanager
async def _lifespan(_app: Starlette) -> AsyncIterator[None]:
    """Stop the llama.cpp server when the dev server shuts down.

    ``atexit`` is not enough under ``langgraph dev``: uvicorn shuts down
    gracefully on SIGTERM, then raises the signal again with Python's default
    handler, which ends the process without running ``atexit``. That is how
    the reloader restarts its worker on every code change, so each reload
    would leave a llama.cpp server behind.
    """
    try:
        yield
    finally:
        await asyncio.to_thread(stop_all)


app = Starlette(lifespan=_lifespan)
"""No routes: ``langgraph.json``'s ``http.app``, merged into the dev server for its lifespan."""
