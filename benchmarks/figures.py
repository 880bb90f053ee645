"""Every published figure table, rendered from its committed results.

A table in the README or ``docs/`` that shows measured figures sits between two
markers naming it::

    <!-- figure: fanout-served -->
    | ... the table, then the line saying which run it is ... |
    <!-- /figure -->

``FIGURES`` maps each name to its results file (``docs/results/*.json``, written by
the benchmark with ``--out``) and to the benchmark's own function that turns those
results into the table. ``make figures`` rewrites every marked block from the
results; ``tests/unit_tests/test_figures.py`` fails when a block differs from what
its results give (a table edited by hand, or results changed without it).

Usage::

    .venv/bin/python -m benchmarks.figures          # rewrite the marked blocks
    .venv/bin/python -m benchmarks.figures --check  # 1 if any block is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import (
    architecture,
    deception,
    durable_load,
    embedded_engines,
    fanout,
    faults,
    pareto_example,
    serve_overhead,
    similarity,
    staircase,
)
from langchain_moa.bench import measure
from langchain_moa.bench.provenance import source_line
from langchain_moa.eval import ablation

ROOT = Path(__file__).parents[1]
DOCUMENTS = ("README.md", "docs/*.md")
"""Where marked blocks are looked for."""

BLOCK = re.compile(
    r"(?P<open><!-- figure: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(?P<close><!-- /figure -->)",
    re.DOTALL,
)


def _setting(value: object) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(item) for item in value)
    return str(value)


@dataclass(frozen=True)
class Figure:
    """A published table: its results file and how the table is made of them."""

    results: str
    """The results file, from the repository root."""
    table: Callable[[Mapping[str, Any]], str]
    """The benchmark's own rendering of its results."""

    def render(self, root: Path = ROOT) -> str:
        """The block's text: the table, then its settings and which run it comes from."""
        report = json.loads((root / self.results).read_text(encoding="utf-8"))
        settings = "; ".join(
            f"{key.replace('_', ' ')} {_setting(value)}"
            for key, value in (report.get("settings") or {}).items()
            if key != "out" and value is not None and value is not False
        )
        shown = f"Settings: {settings}. " if settings else ""
        return f"{self.table(report).rstrip()}\n\n{shown}{source_line(report)}\n"


@dataclass(frozen=True)
class Example:
    """A published table that is computed, not measured: no run is behind it."""

    table: Callable[[], str]
    """The table, made anew from the example's own data."""
    source: str
    """What the table is, in place of a run's provenance."""

    def render(self, root: Path = ROOT) -> str:  # noqa: ARG002 - Figure's signature
        """The block's text: the table, then what it is."""
        return f"{self.table().rstrip()}\n\n{self.source}\n"


FIGURES: Mapping[str, Figure | Example] = {
    "faults": Figure("docs/results/faults.json", faults.summary_markdown),
    "faults-report": Figure("docs/results/faults.json", lambda r: r["markdown"]),
    "bench": Figure("docs/results/bench.json", measure.markdown),
    "fanout": Figure("docs/results/fanout.json", lambda r: fanout.markdown(r["medians"])),
    "fanout-served": Figure(
        "docs/results/fanout_served.json", lambda r: fanout.markdown(r["medians"])
    ),
    "similarity": Figure("docs/results/similarity.json", similarity.markdown),
    "staircase-embedded": Figure(
        "docs/results/staircase_embedded.json", lambda r: staircase.markdown(r["summaries"])
    ),
    "staircase-order": Figure(
        "docs/results/staircase_embedded.json", lambda r: staircase.order_markdown(r["runs"])
    ),
    "staircase-scheduled": Figure(
        "docs/results/staircase_scheduled.json", lambda r: staircase.markdown(r["summaries"])
    ),
    "serve-overhead": Figure(
        "docs/results/serve_overhead.json", lambda r: serve_overhead.markdown(r["rows"])
    ),
    "deception": Figure("docs/results/deception.json", deception.report),
    "embedded-engines": Figure("docs/results/embedded_engines.json", embedded_engines.markdown),
    "embedded-engines-multi": Figure(
        "docs/results/embedded_engines_multi.json", embedded_engines.markdown
    ),
    "pareto-example": Example(pareto_example.table, pareto_example.SOURCE),
    "modules": Example(architecture.table, architecture.SOURCE),
    "strategies": Figure("docs/results/strategies.json", ablation.markdown_of),
    "durable-load": Figure(
        "docs/results/durable_load.json",
        lambda r: durable_load.markdown(r["summary"], r["settings"]["threads"]),
    ),
}
"""Every figure table, by the name its markers give."""


def documents(root: Path = ROOT) -> list[Path]:
    """The files marked blocks may be in."""
    return sorted({path for pattern in DOCUMENTS for path in root.glob(pattern)})


def rendered(text: str, root: Path = ROOT) -> str:
    """``text`` with every marked block made anew from its results.

    Raises:
        KeyError: a block names no figure of ``FIGURES``.
    """

    def block(found: re.Match[str]) -> str:
        name = found["name"]
        if name not in FIGURES:
            msg = f"a block names the figure {name!r}, which FIGURES does not have"
            raise KeyError(msg)
        return f"{found['open']}{FIGURES[name].render(root)}{found['close']}"

    return BLOCK.sub(block, text)


def placed(root: Path = ROOT) -> dict[str, list[Path]]:
    """Where each figure's blocks are."""
    where: dict[str, list[Path]] = {name: [] for name in FIGURES}
    for path in documents(root):
        for found in BLOCK.finditer(path.read_text(encoding="utf-8")):
            where.setdefault(found["name"], []).append(path)
    return where


def main(argv: list[str] | None = None) -> int:
    """Rewrite the blocks, or with ``--check`` say which are out of date (1 if any)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="change nothing; 1 if out of date")
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        text = path.read_text(encoding="utf-8")
        new = rendered(text)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "out of date" if args.check else "rewritten"
    for path in stale:
        print(f"{path}: {verb}", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
