"""llama-cpp-python's server as a child process that stops when its parent dies.

``LlamaServer`` stops its server on exit, but a killed parent (SIGKILL, a crash)
runs no exit hooks. This wrapper watches the parent and stops the server when
the parent is gone, so no server outlives the program that started it.

Usage: ``python -m langchain_moa.local.child PARENT_PID [llama_cpp.server args]``
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time

POLL_S = 1.0
"""How often the child looks for its parent."""


def _stop_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    # The server's own SIGTERM handling shuts it down cleanly.
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> None:
    """Serve with llama_cpp.server's arguments while process ``argv[0]`` lives."""
    parent = int(argv[0])
    threading.Thread(target=_stop_when_orphaned, args=(parent,), daemon=True).start()
    sys.argv = ["llama_cpp.server", *argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
