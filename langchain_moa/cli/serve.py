"""``moa serve`` and ``moa ui``: MoA stacks behind OpenAI's APIs, and the live page."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import webbrowser
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_moa.accounting import known_secret
from langchain_moa.chat_models import ChatMoA
from langchain_moa.cli.common import fail, positive
from langchain_moa.local import stop_all
from langchain_moa.serve import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_MESSAGES,
    ServeExtraMissingError,
)
from langchain_moa.stacks import (
    load_stack,
)

SERVE_API_KEY_ENV = "MOA_SERVE_API_KEY"
"""Where ``moa serve`` reads its bearer token, unless ``--api-key-env`` names another variable."""


def add_parser(commands: Any) -> None:
    """Add ``moa serve`` and ``moa ui``, which share their flags."""
    serve = commands.add_parser(
        "serve",
        help="serve MoA stacks as an OpenAI-compatible API (/v1/chat/completions) and the "
        "live page (/)",
        description="Serve MoA stacks as OpenAI's chat completions API, each under a model "
        "id: the embedded stack as 'local', the paper's presets (with their keys) under "
        "their names, and every --stack file under its model_name or file name (the serve "
        "extra). The live page at / shows each layer's answers as they finish.",
    )
    _add_server_arguments(serve)
    serve.set_defaults(handler=serve_command)
    ui = commands.add_parser(
        "ui",
        help="moa serve, then open its live page in the browser",
        description="Run moa serve and open its live page (/) in the default browser "
        "($BROWSER if set): ask a question, watch each layer's answers fill in and the "
        "final answer stream.",
    )
    _add_server_arguments(ui)
    ui.add_argument(
        "--no-browser", action="store_true", help="serve the page without opening a browser"
    )
    ui.set_defaults(handler=ui_command)


def _add_server_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    serve.add_argument(
        "--stack",
        action="append",
        default=[],
        metavar="FILE",
        help="a stack file (.yaml, .yml, .toml) to serve too (repeat for more)",
    )
    serve.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="the environment variable holding the bearer token clients must send "
        f"(default {SERVE_API_KEY_ENV}; without it set, no token is asked for)",
    )
    serve.add_argument(
        "--max-concurrency",
        type=positive,
        default=DEFAULT_MAX_CONCURRENCY,
        help=f"requests run at once; past it, 429 at once (default {DEFAULT_MAX_CONCURRENCY})",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=positive,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"the largest request body; past it, 413 (default {DEFAULT_MAX_BODY_BYTES})",
    )
    serve.add_argument(
        "--max-messages",
        type=positive,
        default=DEFAULT_MAX_MESSAGES,
        help=f"the most messages of one request; past it, 400 (default {DEFAULT_MAX_MESSAGES})",
    )


def _served_files(paths: Sequence[str]) -> dict[str, Callable[[], ChatMoA]]:
    """Each stack file under its ``model_name`` or its file name, checked now, built later."""
    stacks: dict[str, Callable[[], ChatMoA]] = {}
    for path in paths:
        spec = load_stack(path)  # a bad file stops the server before it listens
        name = spec.model_name or Path(path).stem
        if name in stacks:
            fail(f"--stack {path}: another stack is served as {name!r} already")

        def build(path: str = path) -> ChatMoA:
            return ChatMoA.from_config(path)

        stacks[name] = build
    return stacks


def serve_command(args: argparse.Namespace) -> int:
    """Run ``moa serve`` until SIGINT or SIGTERM."""
    return _serve(args)


def ui_command(args: argparse.Namespace) -> int:
    """Run ``moa serve`` and open its live page, until SIGINT or SIGTERM."""
    return _serve(args, open_page=not args.no_browser)


def _open_page(url: str) -> None:
    print(f"moa ui: opening {url}", file=sys.stderr, flush=True)
    if not webbrowser.open(url):
        print(f"moa ui: no browser found: open {url} yourself", file=sys.stderr, flush=True)


def _on_listening(token: str, *, open_page: bool) -> Callable[[str], None]:
    """What to do once the socket listens: say where (the port bound, if 0 was asked)."""

    def listening(page: str) -> None:
        print(
            f"moa serve: {page}v1 and the live page at {page}, {token}",
            file=sys.stderr,
            flush=True,
        )
        if open_page:
            # Not in this thread: webbrowser waits for a console browser (w3m,
            # lynx) or a $BROWSER command to exit, and the server, which this
            # thread runs next, must answer it first.
            threading.Thread(target=_open_page, args=(page,), daemon=True).start()

    return listening


def _serve(args: argparse.Namespace, *, open_page: bool = False) -> int:
    try:
        # Lazily: starlette and uvicorn are the serve extra's.
        from langchain_moa.serve.app import (  # noqa: PLC0415
            LOOPBACK_HOSTS,
            create_app,
            default_stacks,
            run,
        )
    except ServeExtraMissingError as error:
        fail(str(error))
    variable = args.api_key_env or SERVE_API_KEY_ENV
    api_key = os.environ.get(variable) or None
    if api_key is not None:
        # Whatever the variable is called, anything that echoes the token gets it masked.
        known_secret(api_key)
    if args.api_key_env and api_key is None:
        fail(f"--api-key-env {variable}: the variable is not set")
    loopback = args.host in LOOPBACK_HOSTS
    app = create_app(
        {**default_stacks(), **_served_files(args.stack)},
        api_key=api_key,
        max_concurrency=args.max_concurrency,
        max_body_bytes=args.max_body_bytes,
        max_messages=args.max_messages,
        # On this machine only: no other site's name may stand for it (DNS rebinding).
        hosts=LOOPBACK_HOSTS if loopback else None,
    )
    if api_key is None and not loopback:
        print(
            f"moa serve: warning: listening on {args.host} with no token: anyone who can "
            f"reach it can spend the stacks' keys (set {SERVE_API_KEY_ENV})",
            file=sys.stderr,
        )
    token = f"bearer token from {variable}" if api_key else "no token asked for"
    try:
        run(
            app,
            host=args.host,
            port=args.port,
            listening=_on_listening(token, open_page=open_page),
        )
    finally:
        stop_all()
    return 0
