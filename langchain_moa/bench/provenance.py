"""Where a benchmark's results came from: the date, the commit, the machine, the command.

``moa bench`` and every script in ``benchmarks/`` that publishes a figure write
their results with `provenance` beside them (``docs/results/*.json``);
``benchmarks/figures.py`` renders the docs' tables from those files, each with the
line `source_line` makes of its provenance.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Cores, the CPU's model name (as Linux reports it) and Python's version."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor(),
    )
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version()}


def commit() -> str | None:
    """The checkout's commit, with ``+changes`` when the working tree differs from it."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return None
    changed = _git("status", "--porcelain", "--untracked-files=no")
    return f"{head}+changes" if changed else head


def _git(*args: str) -> str | None:
    done = subprocess.run(  # noqa: S603 - git with our own arguments
        ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
        cwd=Path.cwd(),
        capture_output=True,
        text=True,
        check=False,
    )
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The date, commit, machine and command line of this run."""
    # absolute(), not resolve(): a .venv that is a symlink keeps its name in the command.
    script = Path(sys.argv[0]).absolute()
    here = Path.cwd()
    shown = script.relative_to(here) if script.is_relative_to(here) else script
    args = list(sys.argv[1:] if argv is None else argv)
    # `moa bench` is an entry point; a benchmark script is run by the interpreter.
    command = [str(shown)] if shown.suffix != ".py" else [".venv/bin/python", str(shown)]
    return {
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
        "machine": machine(),
        "command": shlex.join([*command, *args]),
    }


def source_line(report: Mapping[str, Any]) -> str:
    """One sentence: which run a table comes from, and on what machine."""
    made = report["provenance"]
    box = made["machine"]
    revision = (made["commit"] or "no commit")[:12]
    return (
        f"Run on {made['date']}, {box['cores']} cores ({box['cpu']}), Python "
        f"{box['python']}, commit {revision}: `{made['command']}`."
    )
