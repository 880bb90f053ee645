"""``moa bench`` as a script: ChatMoA against its critical path on a local scheduled server.

Usage::

    .venv/bin/python benchmarks/bench.py [--quick] [--only 1,3] [--queries 200] [--limit 16]
        [--in-thread] [--out FILE.json]

The server runs in a child process; ``--in-thread`` serves it in a thread of this one.
"""

from __future__ import annotations

import sys

from langchain_moa.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
