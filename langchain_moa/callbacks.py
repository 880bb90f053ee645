"""How a ``ChatMoA`` run's callbacks reach the graph inside it: the one place for tracing.

One rule: **the graph's runs are children of the ``ChatMoA`` run, and only
tracers see them.** A tracer (LangSmith, ``collect_runs``, the console)
records the whole tree: the graph, each node, each proposer's and the
aggregator's model call. Every other handler sees the ``ChatMoA`` run (whose
usage is the total of every call) and the layer events, and nothing else:
a token counter counts each token once, and an outer graph streaming
``messages`` shows the answer's tokens, not the proposers' drafts.

langchain-core gives a chat model's ``_generate`` its run manager, but
``BaseChatModel.stream``/``astream`` and the implicit streaming inside
``invoke`` (when a streaming handler, such as LangGraph's messages stream,
is attached) call ``_stream``/``_astream`` without it (langchain-core 1.8).
``ChatMoA`` sends the implicit path to ``_generate``, which streams itself and
reports the tokens to the run manager it is given, as langchain-ollama's does;
for explicit streams it opens the run under a known id and keeps its config
(``stream_run``), the one workaround langchain-core leaves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers import BaseTracer

RunManager = CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun


class _LayerEventsOnly:
    """A caller's handler as the graph's runs see it: custom (layer) events only.

    The handler itself is not changed: this view answers the callback
    manager's ``ignore_*`` checks and passes everything else on to it.
    """

    ignore_llm = ignore_chat_model = ignore_chain = ignore_agent = True
    ignore_retriever = ignore_retry = True

    def __init__(self, handler: BaseCallbackHandler) -> None:
        self._handler = handler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)


def _for_graph(handler: BaseCallbackHandler) -> BaseCallbackHandler:
    if isinstance(handler, BaseTracer | _LayerEventsOnly):
        return handler
    return _LayerEventsOnly(handler)  # type: ignore[return-value]  # quacks as its handler


def graph_callbacks(run_manager: RunManager) -> BaseCallbackManager:
    """Callbacks for the graph of the ``ChatMoA`` run ``run_manager`` manages.

    Its runs nest under that run; tracers see them all, other handlers only
    the layer events. The run's non-inheritable handlers are handed on too:
    langchain-core attaches a tracer from the context (``collect_runs``) to
    the ``ChatMoA`` run as one, so the graph's own set-up would attach it
    again as a stranger to the parent run.
    """
    manager_class = (
        AsyncCallbackManager
        if isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        else CallbackManager
    )
    # The run's own handlers too: a handler given to ChatMoA(callbacks=...)
    # gets the layer events, and a tracer there the whole graph.
    handlers = list(run_manager.inheritable_handlers)
    handlers += [h for h in run_manager.handlers if h not in handlers]
    manager = manager_class(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers([_for_graph(h) for h in handlers])
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager


@dataclass(frozen=True)
class _StreamRun:
    model: int
    config: RunnableConfig
    run_id: UUID


_streaming: ContextVar[_StreamRun | None] = ContextVar("moa_stream_run", default=None)


@contextmanager
def stream_run(model: object, config: RunnableConfig, run_id: UUID) -> Iterator[None]:
    """While ``model.stream`` runs, the config and id of the run it opens.

    ``streaming_graph_callbacks`` takes it when ``_stream`` begins; whatever is left
    (a stream never iterated) is cleared here. No token reset: a generator
    may be resumed, and closed, from another context.
    """
    _streaming.set(_StreamRun(id(model), config, run_id))
    try:
        yield
    finally:
        _streaming.set(None)


def _stream_callbacks(model: object, *, is_async: bool) -> BaseCallbackManager | None:
    """Callbacks for the graph of the stream run ``model.stream`` opened, if any.

    The run's handlers are configured from its config as langchain-core
    configured them (the context's tracers included), each seen as
    ``graph_callbacks`` would.
    """
    current = _streaming.get()
    if current is None or current.model != id(model):
        return None
    _streaming.set(None)
    manager_class = AsyncCallbackManager if is_async else CallbackManager
    manager = manager_class.configure(
        inheritable_callbacks=current.config.get("callbacks"),
        local_callbacks=getattr(model, "callbacks", None),
        inheritable_tags=current.config.get("tags"),
        inheritable_metadata=current.config.get("metadata"),
    )
    manager.set_handlers([_for_graph(h) for h in manager.handlers])
    manager.parent_run_id = current.run_id
    return manager


def streaming_graph_callbacks(
    model: object, run_manager: RunManager | None, *, is_async: bool
) -> BaseCallbackManager | None:
    """Callbacks for the graph of a ``_stream``/``_astream`` call, however it was called.

    With the run manager handed over, as ``graph_callbacks``; else from the run
    that ``model.stream`` opened (``stream_run``).
    """
    # Taken even when a manager was handed over: a kept one must not linger.
    opened = _stream_callbacks(model, is_async=is_async)
    return graph_callbacks(run_manager) if run_manager is not None else opened
