"""The ``moa`` command: ``moa chat "question"``, ``moa eval``, ``moa bench``, ``moa serve``.

One module per command (``chat``, ``serve`` with ``ui``, ``bench``, ``studio``; ``moa
eval`` is ``langchain_moa.eval.cli``), each adding its parser; ``fields`` makes the
flags that set stack fields from the stack spec's own fields.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Sequence
from typing import NoReturn

from langchain_moa.cli import bench, chat, serve, studio
from langchain_moa.cli.common import fail
from langchain_moa.eval import cli as eval_cli
from langchain_moa.graph import AggregatorFailedError, LayerFailedError
from langchain_moa.local import LocalExtraMissingError, stop_all


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moa", description="Mixture-of-Agents from the shell.")
    commands = parser.add_subparsers(dest="command", required=True)
    chat.add_parser(commands)
    eval_cli.add_parser(commands)
    bench.add_parser(commands)
    serve.add_parser(commands)
    studio.add_parser(commands)
    return parser


def _exit_on_sigterm(signum: int, _frame: object) -> NoReturn:
    # Servers first: calls in flight then fail at once instead of finishing.
    stop_all()
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``moa`` command."""
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return int(args.handler(args))
    except (
        ValueError,
        FileNotFoundError,
        LocalExtraMissingError,
        LayerFailedError,
        AggregatorFailedError,
    ) as error:
        fail(str(error))


if __name__ == "__main__":
    raise SystemExit(main())
