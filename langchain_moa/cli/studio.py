"""``moa studio``: ``langgraph dev`` on a stack's MoA graph, for LangGraph Studio."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from langchain_moa.cli.common import fail
from langchain_moa.stacks import (
    PRESETS,
)


def add_parser(commands: Any) -> None:
    """Add ``moa studio`` and its flags."""
    studio = commands.add_parser(
        "studio",
        help="serve a stack's MoA graph to LangGraph Studio (langgraph dev)",
        description="Run langgraph dev, LangGraph's in-memory development server, on the "
        "MoA graph of a stack file, a preset or (with neither) the embedded stack, as the "
        "assistant 'moa' (the studio extra). Threads keep every step's checkpoint in "
        ".langgraph_api/ under the working folder.",
    )
    stack = studio.add_mutually_exclusive_group()
    stack.add_argument(
        "--stack", metavar="FILE", help="a stack file (.yaml, .yml, .toml), as moa serve takes"
    )
    stack.add_argument("--preset", choices=PRESETS, help="a preset instead of a file")
    studio.add_argument(
        "--review",
        action="store_true",
        help="stop every run before the aggregator, so its references can be edited in the "
        "thread's state (Studio can also stop there run by run)",
    )
    studio.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    studio.add_argument("--port", type=int, default=2024, help="port to listen on (2024)")
    studio.add_argument(
        "--no-browser", action="store_true", help="do not open Studio in the browser"
    )
    studio.set_defaults(handler=studio_command)


def studio_command(args: argparse.Namespace) -> int:
    """Build the stack's graph here (a bad file stops at once), then become ``langgraph dev``."""
    try:
        from langchain_moa import studio  # noqa: PLC0415 - the studio extra's
    except ModuleNotFoundError as error:
        fail(f"moa studio needs the studio extra (langchain-moa[studio]): {error}")
    environ = {
        **os.environ,
        studio.STACK_ENV: str(Path(args.stack).resolve()) if args.stack else "",
        studio.PRESET_ENV: args.preset or "",
        studio.REVIEW_ENV: "1" if args.review else "0",
    }
    # The dev server builds the same graph from the same variables: built here first,
    # a wrong file or a missing key is told before anything starts.
    studio.build_studio_graph(environ)
    command = studio.dev_command(
        host=args.host, port=args.port, browser=not args.no_browser, environ=environ
    )
    print(f"moa studio: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    os.execve(command[0], command, environ)  # noqa: S606 - langgraph's own CLI, our arguments
