"""``moa bench``'s orchestration row (measurement 3) for two commits, side by side.

Runs ``moa bench --only 3`` from a worktree of ``--before`` and one of ``--after``
(HEAD by default), in turns, ``--rounds`` times each (the machine's load falls on
both alike), and prints the medians: ChatMoA's orchestration per call, the bare
client's, and a plain LangGraph graph's of the same calls::

    .venv/bin/python benchmarks/orchestration_ab.py --before 5495dc6 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
KEYS = ("value", "bare_client_ms_per_call", "plain_langgraph_ms_per_call")


def _measure(tree: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(  # noqa: S603 - this interpreter, moa's own command line
        [sys.executable, "-m", "langchain_moa.cli", "bench", "--only", "3", "--out", str(out)],
        cwd=tree, env=env, check=False, capture_output=True, text=True,
    )  # fmt: skip
    if not out.exists():
        msg = f"moa bench failed in {tree}: {done.stderr[-2000:]}"
        raise RuntimeError(msg)
    row = json.loads(out.read_text())["measurements"]["overhead_ms_per_call"]
    return {key: row[key] for key in KEYS}


def main(argv: list[str] | None = None) -> int:
    """Measure both, in turns; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare with")
    parser.add_argument("--after", default="HEAD", help="the commit measured against it")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"before": Path(scratch) / "before", "after": Path(scratch) / "after"}
        for name, revision in (("before", args.before), ("after", args.after)):
            subprocess.run(  # noqa: S603
                ["git", "worktree", "add", "--detach", str(trees[name]), revision],  # noqa: S607
                cwd=ROOT, check=True, capture_output=True,
            )  # fmt: skip
        try:
            samples: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
            for number in range(args.rounds):
                for name, tree in trees.items():
                    samples[name].append(_measure(tree, Path(scratch) / f"{name}{number}.json"))
                    print(f"round {number + 1} {name}: {samples[name][-1]}", file=sys.stderr)
        finally:
            for tree in trees.values():
                subprocess.run(  # noqa: S603
                    ["git", "worktree", "remove", "--force", str(tree)],  # noqa: S607
                    cwd=ROOT, check=False, capture_output=True,
                )  # fmt: skip
    print("| checkout | ChatMoA ms/call | bare client ms/call | plain LangGraph ms/call |")
    print("|---|---|---|---|")
    for name, rows in samples.items():
        medians = [statistics.median(row[key] for row in rows) for key in KEYS]
        label = args.before if name == "before" else args.after
        print(f"| {label} | " + " | ".join(f"{m:.3f}" for m in medians) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
