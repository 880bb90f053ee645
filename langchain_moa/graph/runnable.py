"""`as_node`: a graph node made of a plain function, without a trace of its own.

LangGraph's ``add_node`` wraps a plain function in its ``RunnableCallable``,
which reads the function's signature once. langchain-core's public
``RunnableLambda`` reads it again on every call (a quarter of a millisecond a
node, langchain-core 1.x), and traces the function inside the node's own run.
So the builder uses LangGraph's class where it is, and ``RunnableLambda``
(slower, the same behaviour) where a LangGraph release has moved it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from langchain_core.runnables import Runnable

T = TypeVar("T")

try:
    # Private in langgraph 1.x (what add_node makes of a plain function), hence the <2
    # pin; the fallback below keeps the package working if a release moves it.
    from langgraph._internal._runnable import RunnableCallable as _RunnableCallable
except ImportError:  # pragma: no cover - only on a langgraph without the private class
    _RunnableCallable = None  # type: ignore[assignment,misc]

RunnableCallable: Callable[..., Runnable] | None = _RunnableCallable
"""LangGraph's node class, or None where this langgraph has moved it."""


def as_node(
    func: Callable[..., T],
    afunc: Callable[..., Awaitable[T]] | None,
    name: str,
) -> Runnable:
    """A node with a sync and an async body, as LangGraph makes one of a plain function.

    Without ``afunc``, async runs call ``func`` as it is: it must only compute
    (``begin``, a join), where LangGraph would hand a plain function to a
    thread on every call.
    """

    async def computed(*args: Any, **kwargs: Any) -> T:
        return func(*args, **kwargs)

    body = afunc or wraps(func)(computed)
    if RunnableCallable is None:
        from langchain_core.runnables import RunnableLambda  # noqa: PLC0415 - the fallback

        return RunnableLambda(func, body, name=name)
    # LangGraph traces the node already (its RunnableSeq's run): a run of the
    # function's own inside it would double the callback work of every call.
    return RunnableCallable(func, body, name=name, trace=False)
