"""docs/architecture.md's module table: each module and what it owns, from its docstring.

Not a measurement: the first paragraph of every module's own docstring, so the
table and the code cannot drift apart (``make figures`` writes it, and
``tests/unit_tests/test_figures.py`` fails when it is stale).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("langchain_moa", "benchmarks")
SOURCE = (
    "Not a measurement: each module's own docstring, its first paragraph "
    "(`benchmarks/architecture.py`)."
)


def owns(path: Path) -> str:
    """The first paragraph of the module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def table() -> str:
    """Every module of the package and the benchmarks, with what it owns."""
    lines = ["| module | what it owns |", "|---|---|"]
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            shown = path.relative_to(ROOT).as_posix()
            said = owns(path).replace("|", r"\|")
            lines.append(f"| `{shown}` | {said} |")
    return "\n".join(lines)
