"""``moa bench``: ChatMoA against its critical path on a local scheduled server."""

from __future__ import annotations

import argparse
from typing import Any

from langchain_moa.cli.common import fail, positive


def _measurements(text: str) -> list[int]:
    try:
        chosen = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        chosen = []
    if not chosen or any(number not in range(1, 7) for number in chosen):
        msg = f"expected measurement numbers 1-6 separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return chosen


def add_parser(commands: Any) -> None:
    """Add ``moa bench`` and its flags."""
    bench = commands.add_parser(
        "bench",
        help="benchmark ChatMoA against its critical path on a local scheduled server",
        description="Run the paper's stack (2 layers of 6 proposers and an aggregator) "
        "against a local OpenAI-compatible server whose every reply follows a schedule, "
        "and print measurement, value, target and whether it holds (the bench extra).",
    )
    bench.add_argument("--out", metavar="PATH", help="also write the results as JSON")
    bench.add_argument("--quick", action="store_true", help="a short run, few queries each")
    bench.add_argument(
        "--only", type=_measurements, metavar="N[,N...]", help="run only these measurements (1-6)"
    )
    bench.add_argument(
        "--queries", type=positive, help="concurrent queries of measurement 5 (default 200)"
    )
    bench.add_argument(
        "--limit",
        type=positive,
        help="the provider's concurrency limit in measurement 5 (default 16)",
    )
    bench.add_argument(
        "--in-thread",
        action="store_true",
        help="serve in a thread of this process, not a child process (it then competes "
        "with the clients for the GIL)",
    )
    bench.set_defaults(handler=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    """Run ``moa bench``: 0 if every target held, 1 if not."""
    from langchain_moa.bench import BenchExtraMissingError  # noqa: PLC0415 - cheap

    try:
        # Lazily: starlette and uvicorn are the bench extra's.
        from langchain_moa.bench.measure import MEASUREMENTS, main  # noqa: PLC0415
    except BenchExtraMissingError as error:
        fail(str(error))
    return main(
        out=args.out,
        quick=args.quick,
        only=args.only or MEASUREMENTS,
        queries=args.queries,
        limit=args.limit,
        in_thread=args.in_thread,
    )
