"""A MoA graph for ``langgraph dev`` and LangGraph Studio: the embedded stack or your own.

``moa studio`` runs ``langgraph dev`` on this package's ``langgraph.json``, which
serves ``graph`` as the ``moa`` assistant and mounts ``app``, whose only job is
its lifespan; the repository's own ``langgraph.json`` (for ``langgraph build``
and LangGraph Server) serves the same. Which stack ``graph`` is comes from the
environment, read when the module is imported:

    MOA_STUDIO_STACK: a stack file (YAML or TOML, as ``moa serve --stack`` takes).
    MOA_STUDIO_PRESET: a preset's name, instead.
    Neither: the embedded stack on SmolLM2-135M-Instruct.
    MOA_STUDIO_REVIEW: ``1`` stops every run before the aggregator
        (``human_review.REVIEW_BEFORE``), for its references to be edited in the
        thread's state; Studio can also stop there run by run.
    MOA_STUDIO_MAX_TOKENS: the embedded stack's longest answer of each call
        (default 256); a stack file or preset keeps its own.

Importing this module builds the stack's models and starts nothing: the
embedded stack's llama.cpp server (on a free 127.0.0.1 port) starts on the
graph's first model call. It stops when the dev server shuts down (``app``'s
lifespan) and, anywhere else, when the interpreter exits. The graph is compiled
without a checkpointer: the server supplies its own, so a thread keeps its
conversation and every run's ``calls`` (each tagged with its ``turn``) across
runs, and every step's checkpoint, from which a run can be resumed or replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from langgraph.graph.state import CompiledStateGraph
from starlette.applications import Starlette

from langchain_moa.graph import compile_moa_graph
from langchain_moa.graph.human_review import REVIEW_BEFORE
from langchain_moa.local import stop_all
from langchain_moa.stacks import StackSpec, build_stack, load_stack
from langchain_moa.stacks.presets import local_spec

STACK_ENV = "MOA_STUDIO_STACK"
"""Environment variable: the stack file the Studio graph is built from."""
PRESET_ENV = "MOA_STUDIO_PRESET"
"""Environment variable: the preset the Studio graph is built from."""
REVIEW_ENV = "MOA_STUDIO_REVIEW"
"""Environment variable: ``1`` stops every run of the Studio graph before its aggregator."""
MAX_TOKENS_ENV = "MOA_STUDIO_MAX_TOKENS"
"""Environment variable: ``max_tokens`` of every call of the embedded Studio graph."""
DEFAULT_STUDIO_MAX_TOKENS = 256
"""Short enough that a run on a laptop's CPU takes seconds, not minutes."""
CONFIG = Path(__file__).with_name("langgraph.json")
"""The ``langgraph.json`` ``moa studio`` gives ``langgraph dev``."""


def studio_max_tokens(environ: Mapping[str, str] = os.environ) -> int:
    """``max_tokens`` for the embedded Studio graph: ``MOA_STUDIO_MAX_TOKENS`` or 256.

    Raises:
        ValueError: The variable is set but is not a positive integer.
    """
    raw = environ.get(MAX_TOKENS_ENV, "").strip()
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


def studio_spec(environ: Mapping[str, str] = os.environ) -> StackSpec:
    """The stack the environment names: a file, a preset, else the embedded one.

    Raises:
        ValueError: Both a file and a preset are named, or the preset is unknown.
        FileNotFoundError: The stack file does not exist.
        StackError: The stack file is wrong (each line names the file and key).
    """
    path, preset = environ.get(STACK_ENV, "").strip(), environ.get(PRESET_ENV, "").strip()
    if path and preset:
        msg = f"{STACK_ENV} and {PRESET_ENV} are both set: name one stack"
        raise ValueError(msg)
    if path:
        return load_stack(path)
    if preset:
        spec = StackSpec(preset=preset)  # StackSpec checks the name
        if not spec.is_embedded:
            return spec
    return local_spec(max_tokens=studio_max_tokens(environ))


def studio_review(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``MOA_STUDIO_REVIEW`` asks every run to stop before the aggregator.

    Raises:
        ValueError: It is set to something other than ``0`` or ``1``.
    """
    raw = environ.get(REVIEW_ENV, "").strip()
    if raw not in {"", "0", "1"}:
        msg = f"{REVIEW_ENV} must be 1 (stop before the aggregator) or 0, got {raw!r}"
        raise ValueError(msg)
    return raw == "1"


def build_studio_graph(environ: Mapping[str, str] = os.environ) -> CompiledStateGraph:
    """The named stack's whole graph (its strategy and policies too), no checkpointer."""
    interrupt = REVIEW_BEFORE if studio_review(environ) else None
    stack = build_stack(studio_spec(environ))
    return compile_moa_graph(stack, name="moa", interrupt_before=interrupt)


def dev_command(
    *, host: str, port: int, browser: bool, environ: Mapping[str, str] = os.environ
) -> list[str]:
    """The ``langgraph dev`` command line that serves `CONFIG`.

    Raises:
        FileNotFoundError: ``langgraph`` (the ``studio`` extra's CLI) is not installed.
    """
    beside = Path(sys.executable).with_name("langgraph")
    found = str(beside) if beside.exists() else shutil.which("langgraph", path=environ.get("PATH"))
    if found is None:
        msg = "moa studio runs langgraph dev: install the studio extra (langchain-moa[studio])"
        raise FileNotFoundError(msg)
    command = [found, "dev", "--config", str(CONFIG), "--host", host, "--port", str(port)]
    return command if browser else [*command, "--no-browser"]


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


graph = build_studio_graph()
"""What ``langgraph.json`` serves as the ``moa`` graph."""

app = Starlette(lifespan=_lifespan)
"""No routes: ``langgraph.json``'s ``http.app``, merged into the dev server for its lifespan."""
