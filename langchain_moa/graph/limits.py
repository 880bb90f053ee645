"""Time limits on model calls: a call's ``timeout_s`` and its layer's deadline.

A layer's proposers are separate graph nodes, and LangGraph starts the join
only when every one of them has returned. So each proposer enforces the
layer's deadline itself: the proposers of one run's layer share a
``LayerClock``, which closes once ``min_proposers`` have answered and
``deadline_s`` has passed; a call still running then is cancelled, and its
node returns a ``timeout`` record at once.

Async calls are cancelled for real. A sync call cannot be interrupted in
Python: it runs in a daemon thread that is left to its client's own timeout,
and its node stops waiting for it (so the answer is not held up).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

from langchain_moa.accounting import CallTimeoutError
from langchain_moa.stacks import Policy

T = TypeVar("T")

_ABANDONED: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "moa_call_abandoned", default=None
)


def abandoned() -> threading.Event | None:
    """Set once ``call_within`` stops waiting for the sync call running in this thread.

    What runs before the request (waiting for a provider's slot) checks it, so
    that a call nobody waits for any more is not sent late.
    """
    return _ABANDONED.get()


class LayerClock:
    """One run's layer: when it began, how many answered, and whether it may go on."""

    def __init__(self, policy: Policy) -> None:
        """Start the layer's clock now."""
        self.policy = policy
        self.started = time.monotonic()
        self._answers = 0
        self._quorum_at: float | None = None
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []

    def closes_at(self) -> float | None:
        """When the layer goes on without its late calls; None while that is not known."""
        deadline, policy = self.policy.deadline_s, self.policy
        if deadline is None:
            return None
        if policy.deadline_after == "start":
            return self.started + deadline
        return None if self._quorum_at is None else self._quorum_at + deadline

    def closed(self) -> bool:
        """Whether the layer has enough answers and its deadline has passed."""
        closes_at = self.closes_at()
        return (
            self._answers >= self.policy.min_proposers
            and closes_at is not None
            and time.monotonic() >= closes_at
        )

    def answered(self) -> None:
        """Count one answer; wake the waiting calls, whose deadline may now be known or past."""
        with self._lock:
            self._answers += 1
            if self._answers == self.policy.min_proposers:
                self._quorum_at = time.monotonic()
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` on every answer of the layer; returns what stops it."""
        with self._lock:
            self._wakers.append(wake)

        def stop() -> None:
            with self._lock:
                if wake in self._wakers:
                    self._wakers.remove(wake)

        return stop


class LayerClocks:
    """The clocks of the layers in flight, one per run and layer.

    A clock lives as long as one of its layer's calls holds it.
    """

    def __init__(self) -> None:
        """No layer in flight."""
        self._clocks: weakref.WeakValueDictionary[tuple[str, int], LayerClock] = (
            weakref.WeakValueDictionary()
        )
        self._lock = threading.Lock()

    def get(self, run: str, layer: int, policy: Policy) -> LayerClock:
        """The clock of ``run``'s ``layer``, started by the first of its calls to ask."""
        with self._lock:
            clock = self._clocks.get((run, layer))
            if clock is None:
                clock = LayerClock(policy)
                self._clocks[run, layer] = clock
            return clock


def _wait_s(clock: LayerClock | None, call_ends: float | None) -> float | None:
    """Seconds until something could end the wait, None for no bound."""
    ends = [t for t in (call_ends, clock.closes_at() if clock else None) if t is not None]
    return max(0.0, min(ends) - time.monotonic()) if ends else None


def _late(clock: LayerClock | None, call_ends: float | None) -> str | None:
    """Why the call must stop now, or None."""
    if call_ends is not None and time.monotonic() >= call_ends:
        return "ran past timeout_s"
    if clock is not None and clock.closed():
        return "ran past its layer's deadline_s"
    return None


def _limits(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


def call_within(call: Callable[[], T], *, timeout_s: float | None, clock: LayerClock | None) -> T:
    """``call()``, stopped waiting for at its timeout or its layer's deadline.

    Raises:
        CallTimeoutError: the call was too late; it is left to finish in its thread.
    """
    if timeout_s is None and (clock is None or clock.policy.deadline_s is None):
        return call()
    ends = _limits(timeout_s)
    result: Future[T] = Future()
    wake = threading.Event()
    result.add_done_callback(lambda _: wake.set())

    def run() -> None:
        try:
            result.set_result(call())
        except BaseException as error:  # noqa: BLE001 - handed to the waiting node
            result.set_exception(error)

    # A daemon thread: a stalled call must not keep the interpreter alive at exit.
    context = contextvars.copy_context()
    abandoned = threading.Event()
    context.run(_ABANDONED.set, abandoned)
    threading.Thread(target=context.run, args=(run,), daemon=True).start()
    stop = clock.watch(wake.set) if clock else (lambda: None)
    try:
        while not result.done():
            if why := _late(clock, ends):
                abandoned.set()
                msg = f"the call {why} and was abandoned"
                raise CallTimeoutError(msg)
            wake.wait(_wait_s(clock, ends))
            wake.clear()
        return result.result()
    finally:
        stop()


async def acall_within(
    call: Callable[[], Awaitable[T]], *, timeout_s: float | None, clock: LayerClock | None
) -> T:
    """``await call()``, cancelled at its timeout or its layer's deadline.

    Cancelling the caller cancels the call too, and waits for it to unwind.

    Raises:
        CallTimeoutError: the call was too late and was cancelled.
    """
    if timeout_s is None and (clock is None or clock.policy.deadline_s is None):
        return await call()
    ends = _limits(timeout_s)
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(call())
    wake = asyncio.Event()

    def wake_up() -> None:
        loop.call_soon_threadsafe(wake.set)

    stop = clock.watch(wake_up) if clock else (lambda: None)
    waker = asyncio.ensure_future(wake.wait())
    try:
        while not task.done():
            if why := _late(clock, ends):
                msg = f"the call {why} and was cancelled"
                raise CallTimeoutError(msg)
            await asyncio.wait(
                {task, waker}, timeout=_wait_s(clock, ends), return_when="FIRST_COMPLETED"
            )
            if waker.done():
                wake.clear()
                waker = asyncio.ensure_future(wake.wait())
        return task.result()
    finally:
        stop()
        for pending in (task, waker):
            pending.cancel()
        # Let the cancelled call unwind (close its connection) before returning.
        await asyncio.gather(task, waker, return_exceptions=True)
