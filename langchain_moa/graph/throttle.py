"""Provider limits: how many calls one provider gets at once, and how many a second.

A stack's ``provider_limits`` name a provider by a model's base URL or its
provider name. The limits are shared by the whole process: every query of
every stack that names the same provider with the same limits waits on the
same ``Throttle``, so a batch of concurrent queries never sends more.

A call holds its slot for as long as its request may be open. A sync call
that ran past its time is abandoned to a thread (see ``limits``) and keeps
its slot until its client gives up, so waiting for a slot counts in the
call's ``timeout_s`` and its layer's deadline.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.rate_limiters import InMemoryRateLimiter

from langchain_moa.accounting import CallTimeoutError
from langchain_moa.graph.limits import abandoned
from langchain_moa.stacks import ProviderLimit, StackError

T = TypeVar("T")

_POLL_S = 0.05
"""How often a sync waiter looks whether its caller gave up on it."""

_BASE_URL_FIELDS = ("openai_api_base", "base_url", "anthropic_api_url", "api_base")
"""Where chat models keep their server's address (langchain-openai, -ollama, -anthropic...)."""


def _check(given_up: threading.Event | None, waited_for: str) -> None:
    """Raise if the caller gave up on the call while it waited for ``waited_for``.

    Raises:
        CallTimeoutError: it did; the call must not be sent.
    """
    if given_up is not None and given_up.is_set():
        msg = f"the call was abandoned while it waited for its provider's {waited_for}"
        raise CallTimeoutError(msg)


@dataclass
class _Waiter:
    wake: Callable[[], None]
    granted: bool = False


class ConcurrencyLimit:
    """A semaphore shared by threads and event loops alike, first come first served.

    ``asyncio.Semaphore`` belongs to one event loop, and ``threading.Semaphore``
    would block a loop while it waits; sync and async runs of one stack (and
    each ``asyncio.run`` of a script) must count against the same limit.
    """

    def __init__(self, limit: int) -> None:
        """A limit of ``limit`` holders at once."""
        self.limit = limit
        self._holders = 0
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    def _take(self) -> bool:
        """Take a free slot if nobody queues for one (called under the lock)."""
        if self._holders < self.limit and not self._waiters:
            self._holders += 1
            return True
        return False

    def acquire(self, given_up: threading.Event | None = None) -> None:
        """Wait for a slot, blocking this thread.

        Raises:
            CallTimeoutError: ``given_up`` was set while waiting: the caller
                stopped waiting for the call, which must not be sent.
        """
        with self._lock:
            if self._take():
                return
            event = threading.Event()
            waiter = _Waiter(event.set)
            self._waiters.append(waiter)
        try:
            while not event.wait(None if given_up is None else _POLL_S):
                _check(given_up, "slot")
        except BaseException:  # a timeout, or KeyboardInterrupt: the slot must not be lost
            self._withdraw(waiter)
            raise

    async def aacquire(self) -> None:
        """Wait for a slot without blocking the event loop; cancelling gives it up."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not future.done():
                future.set_result(None)

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(resolve)
            except RuntimeError:  # its loop is closed: nobody will take the slot
                self.release()

        with self._lock:
            if self._take():
                return
            waiter = _Waiter(wake)
            self._waiters.append(waiter)
        try:
            await future
        except BaseException:
            self._withdraw(waiter)
            raise

    def _withdraw(self, waiter: _Waiter) -> None:
        """A waiter gives up: out of the queue, or the slot it was just handed passes on."""
        with self._lock:
            granted = waiter.granted
            if not granted:
                self._waiters.remove(waiter)
        if granted:
            self.release()

    def release(self) -> None:
        """Give a slot back: to the first waiter if there is one."""
        with self._lock:
            if not self._waiters:
                self._holders -= 1
                return
            # The slot passes straight on: a newcomer cannot take it first.
            waiter = self._waiters.popleft()
            waiter.granted = True
        waiter.wake()


@dataclass(frozen=True)
class Throttle:
    """One provider's limits: a concurrency slot, then a token of the rate."""

    concurrency: ConcurrencyLimit | None
    rate: InMemoryRateLimiter | None

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot (and take a rate token) for one call.

        Raises:
            CallTimeoutError: the caller stopped waiting for the call meanwhile
                (``limits.abandoned``): it is not sent.
        """
        given_up = abandoned()
        if self.concurrency is not None:
            self.concurrency.acquire(given_up)
        try:
            if self.rate is not None:
                self.rate.acquire()
            _check(given_up, "rate")
            yield
        finally:
            if self.concurrency is not None:
                self.concurrency.release()

    @asynccontextmanager
    async def aslot(self) -> AsyncIterator[None]:
        """``slot``, for async calls."""
        if self.concurrency is not None:
            await self.concurrency.aacquire()
        try:
            if self.rate is not None:
                await self.rate.aacquire()
            yield
        finally:
            if self.concurrency is not None:
                self.concurrency.release()


_SHARED: dict[tuple[str, ProviderLimit], Throttle] = {}
_SHARED_LOCK = threading.Lock()


def shared_throttle(key: str, limit: ProviderLimit) -> Throttle:
    """The process's one throttle for ``key`` under ``limit``."""
    with _SHARED_LOCK:
        if (key, limit) not in _SHARED:
            rate = None
            if limit.requests_per_second is not None:
                # A bucket of one: calls start evenly spaced, never in a burst.
                rate = InMemoryRateLimiter(
                    requests_per_second=limit.requests_per_second,
                    check_every_n_seconds=min(0.1, 1 / limit.requests_per_second / 4),
                    max_bucket_size=1,
                )
            concurrency = None
            if limit.max_concurrency is not None:
                concurrency = ConcurrencyLimit(limit.max_concurrency)
            _SHARED[key, limit] = Throttle(concurrency, rate)
        return _SHARED[key, limit]


def provider_keys(model: BaseChatModel) -> list[str]:
    """What a limit may name a model by: its base URL, then its provider."""
    keys = []
    for name in _BASE_URL_FIELDS:
        value = getattr(model, name, None)
        if isinstance(value, str) and value:
            keys.append(value.rstrip("/"))
            break
    provider = model._get_ls_params().get("ls_provider")  # noqa: SLF001 - LangChain's provider name
    if provider:
        keys.append(provider)
    return keys


@dataclass(frozen=True)
class Throttles:
    """A stack's provider limits, looked up per model."""

    limits: Mapping[str, ProviderLimit] = field(default_factory=dict)
    _by_key: dict[str, ProviderLimit] = field(init=False, repr=False, compare=False)
    _by_model: dict[int, tuple[BaseChatModel, Throttle | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Each model (by ``id``, kept so the id stays its own) and its throttle, found on its
    first call: every call looks it up."""

    def __post_init__(self) -> None:
        """Key the limits as models are keyed (a base URL without its trailing slash)."""
        by_key = {key.rstrip("/"): limit for key, limit in self.limits.items()}
        object.__setattr__(self, "_by_key", by_key)

    def for_model(self, model: BaseChatModel) -> Throttle | None:
        """The throttle of the first of ``model``'s keys that a limit names."""
        if not self._by_key:
            return None
        known = self._by_model.get(id(model))
        if known is not None and known[0] is model:
            return known[1]
        key = next((k for k in provider_keys(model) if k in self._by_key), None)
        found = None if key is None else shared_throttle(key, self._by_key[key])
        self._by_model[id(model)] = (model, found)
        return found

    def check(self, models: Iterable[BaseChatModel]) -> None:
        """Refuse limits that name none of ``models``: a typo would limit nothing.

        Raises:
            StackError: naming each such key and what the models can be named by.
        """
        known = {key for model in models for key in provider_keys(model)}
        unmatched = sorted(k for k in self.limits if k.rstrip("/") not in known)
        if unmatched:
            msg = (
                f"provider_limits: {', '.join(map(repr, unmatched))} names none of the "
                f"stack's models (they are: {', '.join(map(repr, sorted(known)))})"
            )
            raise StackError(msg)

    def wrap(self, model: BaseChatModel, call: Callable[[], T]) -> Callable[[], T]:
        """``call`` run inside ``model``'s provider slot, if it has a limit."""
        throttle = self.for_model(model)
        if throttle is None:
            return call

        def limited() -> T:
            with throttle.slot():
                return call()

        return limited

    def awrap(
        self, model: BaseChatModel, call: Callable[[], Awaitable[T]]
    ) -> Callable[[], Awaitable[T]]:
        """``wrap``, for async calls."""
        throttle = self.for_model(model)
        if throttle is None:
            return call

        async def limited() -> T:
            async with throttle.aslot():
                return await call()

        return limited
