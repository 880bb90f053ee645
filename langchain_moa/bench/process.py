"""The scheduled server in a process of its own, as a real provider is.

``ServerProcess`` starts ``python -m langchain_moa.bench.server`` and reads
the server's records over HTTP, so the critical path and the peak in flight
still come from the server's own schedule and counts. Served in a thread of
the measuring process instead (``ScheduledServer``), the server would compete
with the clients it measures for the GIL.
"""

from __future__ import annotations

import atexit
import json
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import IO, Protocol, Self

import httpx

from langchain_moa.bench.server import Behaviour, Record, behaviours_json

START_TIMEOUT_S = 60.0
"""Long enough for the child's imports on a loaded machine."""
STOP_TIMEOUT_S = 5.0
"""How long a terminated server may take to end before it is killed."""
CONTROL_TIMEOUT_S = 60.0


class BenchServer(Protocol):
    """What the measurements need of a scheduled server, in this process or another."""

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        ...

    @property
    def thread_id(self) -> int | None:
        """The serving thread's id when it serves in this process."""
        ...

    @property
    def errors(self) -> list[str] | list[BaseException]:
        """What the server itself raised (a bug there)."""
        ...

    def reset(self) -> list[Record]:
        """The records since the last reset, then forgotten with the peaks."""
        ...

    def peak_in_flight(self, behaviour: str = "") -> int:
        """The most requests held at once since the last reset."""
        ...


class ServerProcess:
    """The scheduled server as a child process, a context manager.

    Stopped on ``__exit__`` (terminated, killed after ``STOP_TIMEOUT_S``), at
    the interpreter's exit, and by itself when this process's end closes its
    stdin.

    Args:
        behaviours: Behaviour by name, as ``ScheduledServer`` takes them.
        seed: Seeds every draw, with the request's model and messages.
    """

    def __init__(self, behaviours: Mapping[str, Behaviour] | None = None, *, seed: int = 0) -> None:
        """Describe the server; it starts on ``__enter__``."""
        self.behaviours = dict(behaviours or {})
        self.seed = seed
        self.port = 0
        self._process: subprocess.Popen[str] | None = None
        self._client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        if not self.port:
            msg = "the scheduled server is not running"
            raise RuntimeError(msg)
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def thread_id(self) -> int | None:
        """None: no thread of this process serves, its CPU time is the client's alone."""
        return None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return None if self._process is None else self._process.pid

    def __enter__(self) -> Self:
        """Start the server and wait for it to listen.

        Raises:
            RuntimeError: It ended or stayed silent for ``START_TIMEOUT_S``.
        """
        command = [
            sys.executable,
            "-m",
            "langchain_moa.bench.server",
            "--port",
            "0",
            "--seed",
            str(self.seed),
            "--behaviours",
            behaviours_json(self.behaviours),
        ]
        # Its own session: a Ctrl-C reaches this process, which stops the
        # server in order, rather than both at once.
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            self.port = _ready_port(self._process)
        except BaseException:
            self.stop()
            raise
        self._client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", timeout=CONTROL_TIMEOUT_S
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def stop(self) -> None:
        """Terminate the server, kill it if it outlives ``STOP_TIMEOUT_S``; safe to repeat."""
        process, self._process = self._process, None
        self.port = 0
        if self._client is not None:
            self._client.close()
            self._client = None
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()

    def _get(self, path: str, **params: str) -> object:
        return self._control().get(path, params=params).raise_for_status().json()

    def _control(self) -> httpx.Client:
        if self._client is None:
            msg = "the scheduled server is not running"
            raise RuntimeError(msg)
        return self._client

    @property
    def records(self) -> list[Record]:
        """Every request since the last ``reset``, in order of arrival."""
        return _records(self._get("/bench/records"))

    @property
    def errors(self) -> list[str]:
        """What the server itself raised (a bug there), as ``repr``."""
        found = self._get("/bench/errors")
        return [str(e) for e in found] if isinstance(found, list) else []

    def reset(self) -> list[Record]:
        """Forget the records and peaks so far; returns the records."""
        return _records(self._control().post("/bench/reset").raise_for_status().json())

    def peak_in_flight(self, behaviour: str = "") -> int:
        """The most requests held at once since ``reset``: of ``behaviour``, or all."""
        found = self._get("/bench/peak", behaviour=behaviour)
        return found if isinstance(found, int) else 0


def _records(data: object) -> list[Record]:
    if not isinstance(data, list):
        msg = f"the scheduled server sent no records: {data!r}"
        raise TypeError(msg)
    return [Record.from_json(r) for r in data]


def _ready_port(process: subprocess.Popen[str]) -> int:
    """The port in the server's ready line, ``{"port": N}``."""
    stdout: IO[str] | None = process.stdout
    assert stdout is not None  # noqa: S101 - started with stdout=PIPE
    deadline = time.monotonic() + START_TIMEOUT_S
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([stdout], [], [], left)
        if not readable:
            break
        line = stdout.readline()
        if not line:
            msg = f"the scheduled server ended before it listened (exit {process.wait()})"
            raise RuntimeError(msg)
        try:
            return int(json.loads(line)["port"])
        except (ValueError, KeyError, TypeError):
            continue
    msg = f"the scheduled server did not listen within {START_TIMEOUT_S:.0f} s"
    raise RuntimeError(msg)
