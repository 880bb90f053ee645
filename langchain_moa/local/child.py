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
from typing import Any

POLL_S = 1.0
"""How often the child looks for its parent."""


def _stop_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    # The server's own SIGTERM handling shuts it down cleanly.
    os.kill(os.getpid(), signal.SIGTERM)


def _render_messages_verbatim() -> None:
    """Make llama-cpp-python's ``chatml-function-calling`` format render text as it is.

    That format (the embedded SmolLM2's, for its tools) renders the conversation
    with a Jinja environment built with ``autoescape=select_autoescape(["html",
    "xml"])``, which escapes every template made from a string: the model reads
    ``don&#39;t`` for "don't", ``&lt;`` for "<", and copies the entities into its
    answers (llama-cpp-python 0.3.x, ``llama_chat_format.chatml_function_calling``).
    A chat prompt is not HTML: the module's environment class is swapped for one
    that never escapes.
    """
    # Imported here: only the server's own process pays for llama_cpp.
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: PLC0415
    from llama_cpp import llama_chat_format  # noqa: PLC0415

    class VerbatimEnvironment(ImmutableSandboxedEnvironment):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["autoescape"] = False
            super().__init__(*args, **kwargs)

    llama_chat_format.ImmutableSandboxedEnvironment = VerbatimEnvironment  # type: ignore[misc]


def main(argv: list[str]) -> None:
    """Serve with llama_cpp.server's arguments while process ``argv[0]`` lives."""
    parent = int(argv[0])
    threading.Thread(target=_stop_when_orphaned, args=(parent,), daemon=True).start()
    _render_messages_verbatim()
    sys.argv = ["llama_cpp.server", *argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
