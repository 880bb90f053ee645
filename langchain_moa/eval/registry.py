"""Every benchmark ``moa eval`` knows, in the report's column order.

A benchmark is a `Benchmark` record in its own module; adding one is adding its line here.
Nothing imported here may import the ``eval`` extra (``moa`` starts without it).
"""

from __future__ import annotations

from langchain_moa.eval import alpaca, flask, gsm8k, mt_bench
from langchain_moa.eval.benchmark import Benchmark

BENCHMARKS: tuple[Benchmark, ...] = (
    alpaca.BENCHMARK,
    mt_bench.BENCHMARK,
    flask.BENCHMARK,
    gsm8k.BENCHMARK,
)


def benchmark(name: str) -> Benchmark:
    """The benchmark ``moa eval NAME`` runs.

    Raises:
        ValueError: No benchmark has that name; the message lists them.
    """
    for candidate in BENCHMARKS:
        if candidate.name == name:
            return candidate
    names = ", ".join(b.name for b in BENCHMARKS)
    msg = f"unknown benchmark {name!r}: choose from {names}"
    raise ValueError(msg)
