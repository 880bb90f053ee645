"""uvicorn serving an ASGI app on 127.0.0.1: in a daemon thread of the caller, or in the foreground.

``BackgroundServer`` is shared by the benchmark's scheduled server and the
fault-injection server (``benchmarks/fault_server.py``) when the process that
measures plays them too, so a test needs no second program. ``serve`` is the
scheduled server's own program (``python -m langchain_moa.bench.server``):
a real provider is another process, which competes with its clients for
nothing but the CPUs.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from langchain_moa.bench import EXTRA_HINT, BenchExtraMissingError
from langchain_moa.sockets import tcp_listener

try:
    import uvicorn
except ImportError as error:  # pragma: no cover - the bench extra is in the test set-up
    msg = f"the benchmark's server needs uvicorn and starlette: {EXTRA_HINT}"
    raise BenchExtraMissingError(msg) from error

START_TIMEOUT_S = 10.0


def _config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="off",
        access_log=False,
        # Deliberate drops (a fault server's cut streams) are logged by
        # uvicorn as errors; the apps keep their own errors instead.
        log_config=None,
        log_level="critical",
        timeout_graceful_shutdown=2,
        # uvicorn closes an idle connection after 5 s by default, and a client
        # that reuses it at that moment reads a reset (a benchmark's client
        # waits out other queries between its calls); providers keep them longer.
        timeout_keep_alive=75,
        # Hundreds of clients connect at once in the load measurements.
        backlog=4096,
    )


def serve(app: Any, *, port: int = 0, on_ready: Callable[[int], None]) -> None:
    """Serve ``app`` on ``127.0.0.1:<port>`` in this thread until SIGTERM, SIGINT or stdin's end.

    Args:
        app: The ASGI application.
        port: The port; 0 takes a free one.
        on_ready: Called with the port once the server accepts connections.
    """
    listening = tcp_listener("127.0.0.1", port)
    server = uvicorn.Server(_config(app))

    def stop_at_end_of_stdin() -> None:
        # The parent holds our stdin: when it ends, even killed outright,
        # the pipe closes and the server is not left behind.
        sys.stdin.read()
        server.should_exit = True

    async def main() -> None:
        serving = asyncio.create_task(server.serve(sockets=[listening]))
        # uvicorn sets a plain flag once it listens; there is no event to await.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if server.started:
            on_ready(listening.getsockname()[1])
        await serving

    threading.Thread(target=stop_at_end_of_stdin, daemon=True, name="stdin-watch").start()
    asyncio.run(main())


class BackgroundServer:
    """``app`` served on ``127.0.0.1:<port>`` between ``start()`` and ``stop()``.

    Args:
        app: The ASGI application.
        name: The serving thread's name.
    """

    def __init__(self, app: Any, *, name: str = "asgi-server") -> None:
        """Describe the server; nothing listens until ``start()``."""
        self.app = app
        self.name = name
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        """The serving thread's event loop, once it runs."""
        self.thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, what an OpenAI client is given."""
        if not self.port:
            msg = f"{self.name} is not running"
            raise RuntimeError(msg)
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Listen on a free port and serve in a daemon thread.

        Raises:
            RuntimeError: The server did not start within ``START_TIMEOUT_S``.
        """
        listening = tcp_listener("127.0.0.1", 0)
        self.port = listening.getsockname()[1]
        self._server = uvicorn.Server(_config(self.app))
        self.thread = threading.Thread(
            target=asyncio.run, args=(self._serve(listening),), daemon=True, name=self.name
        )
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.stop()
                msg = f"{self.name} did not start"
                raise RuntimeError(msg)
            time.sleep(0.01)

    async def _serve(self, listening: socket.socket) -> None:
        self.loop = asyncio.get_running_loop()
        assert self._server is not None  # noqa: S101 - set before the thread starts
        await self._server.serve(sockets=[listening])

    def call_soon(self, callback: Any, *args: Any) -> None:
        """Run ``callback(*args)`` in the serving thread's loop (when it runs)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback, *args)

    def stop(self) -> None:
        """Stop serving and wait (10 s at most) for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.port = 0
