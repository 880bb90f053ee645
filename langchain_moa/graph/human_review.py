"""Stop before the aggregator, read the references, edit or drop some, resume.

A run stopped there keeps the references in its state (``references``, and
``reference_nodes``: who wrote each, in the same order). Changing them is
LangGraph's own ``update_state``; resuming is ``invoke(None, config)``, which
calls only the aggregator. The aggregator's call record then lists what was
changed (``edited_references``), however the change was made::

    graph = build_moa_graph(layers, aggregator, checkpointer=InMemorySaver(),
                            interrupt_before=REVIEW_BEFORE)
    graph.invoke({"messages": [("user", question)]}, config)
    review = pending_review(graph, config)
    edit_references(review, {"layer1/model-b": "a better answer",  # its new text
                             "layer1/model-c": None})  # dropped
    graph.invoke(None, config)

The same works on an outer graph whose node calls
``ChatMoA(durable=True, review_references=True)``:
``pending_review(outer, config, moa=chat.graph)`` finds the MoA graph's state
in the outer thread, and resuming is ``outer.invoke(None, config)``.
``langgraph dev`` and Studio offer the same stop per run
(``interrupt_before=["aggregator"]``) and state editing; ``moa studio
--review`` stops every run there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from langchain_moa.accounting import ModelCall, ReferenceEdit
from langchain_moa.graph.state import AGGREGATOR_NODE, MoAState, turn

REVIEW_BEFORE = [AGGREGATOR_NODE]
"""``interrupt_before`` that stops a MoA run where its references can be reviewed (a
list: LangGraph adds it to ``interrupt_after``)."""

CALLED_PREFIX = "moa-"
"""How the namespace segment a durable ``ChatMoA``'s graph is saved under begins (see
its ``_thread``)."""

Node = Callable[[MoAState, RunnableConfig], dict]


def shown_references(state: Mapping[str, Any]) -> dict[str, str]:
    """The references the aggregator is to read, each under the node that wrote it.

    Raises:
        ValueError: ``references`` and ``reference_nodes`` differ in length (one
            was changed without the other).
    """
    nodes, texts = state.get("reference_nodes", []), state.get("references", [])
    if len(nodes) != len(texts):
        msg = (
            f"the state holds {len(texts)} references but {len(nodes)} reference_nodes: "
            "they go together (the node that wrote each reference, in order); to drop "
            "or reorder references, update both"
        )
        raise ValueError(msg)
    return dict(zip(nodes, texts, strict=True))


def reference_edits(state: Mapping[str, Any]) -> list[ReferenceEdit]:
    """What was changed in the references since the last proposer layer's join wrote them.

    Compared with this run's call records of that layer: a reference whose text
    is not its proposer's answer was edited; a proposer's answer that is not among
    the references (and that no ``reference_filter`` left out) was dropped; a
    reference no proposer of this run wrote was added. Order is not an edit. A run
    that reuses its turn's references (``fanout="per_turn"``) has no records to
    compare with: none are reported.

    Raises:
        ValueError: ``references`` and ``reference_nodes`` differ in length (one
            was changed without the other).
    """
    shown = shown_references(state)
    if state.get("reused"):
        return []
    now = turn(state)
    proposed = [
        c for c in state.get("calls", []) if c["turn"] == now and c["node"].startswith("layer")
    ]
    if not proposed:
        return []
    last = max(c["layer"] for c in proposed)
    answered = {c["node"]: c["text"] for c in proposed if c["layer"] == last and c["error"] is None}
    filtered = {d["node"] for d in state.get("dropped", []) if d["turn"] == now}
    edits = [
        ReferenceEdit(node=node, edit="added" if node not in answered else "edited")
        for node, text in shown.items()
        if node not in answered or answered[node] != text
    ]
    edits += [
        ReferenceEdit(node=node, edit="dropped")
        for node in answered
        if node not in shown and node not in filtered
    ]
    return edits


def noting_edits(node: Node) -> Node:
    """The aggregator node, whose answer's record lists the edits of the state it was given.

    Read once, as the node starts: strategies whose aggregator reads the references
    a window at a time (Self-MoA-Seq) or streams a last layer itself (staircase)
    change what their own steps read, which is not an edit.
    """

    def noted(state: MoAState, config: RunnableConfig) -> dict:
        edits = reference_edits(state)
        return _with_edits(node(state, config), edits)

    return noted


def anoting_edits(
    node: Callable[[MoAState, RunnableConfig], Awaitable[dict]],
) -> Callable[[MoAState, RunnableConfig], Awaitable[dict]]:
    """`noting_edits`, for the node's async body."""

    async def noted(state: MoAState, config: RunnableConfig) -> dict:
        edits = reference_edits(state)
        return _with_edits(await node(state, config), edits)

    return noted


def _with_edits(update: dict, edits: list[ReferenceEdit]) -> dict:
    """``update`` with ``edits`` on its last aggregator record (the one that answered)."""
    calls: list[ModelCall] = list(update.get("calls", []))
    answering = [i for i, c in enumerate(calls) if c["node"].startswith(AGGREGATOR_NODE)]
    if not edits or not answering:
        return update
    calls[answering[-1]] = {**calls[answering[-1]], "edited_references": edits}
    return {**update, "calls": calls}


@dataclass(frozen=True)
class PendingReview:
    """A MoA run stopped before its aggregator, and the references it is to read."""

    graph: Pregel
    """The graph whose ``update_state`` changes the run's state."""
    config: RunnableConfig
    """The MoA graph's checkpoint, as that ``update_state`` takes it."""
    references: dict[str, str]
    """Each reference under the node that wrote it, in the order the aggregator reads them."""


def pending_review(
    graph: Pregel, config: RunnableConfig, *, moa: Pregel | None = None
) -> PendingReview | None:
    """The MoA run of ``config``'s thread that stopped before its aggregator, if one did.

    Stopped for review (``REVIEW_BEFORE``), or cut short there (a crash while the
    aggregator ran): either way resuming the thread calls the aggregator next.

    Args:
        graph: The MoA graph itself, or an outer graph whose node runs it.
        config: The thread's config (``thread_id``).
        moa: The MoA graph a node runs through a durable ``ChatMoA``
            (``ChatMoA.graph``). LangGraph finds a subgraph only where a node
            holds the compiled graph itself, so a model called in a node is
            looked for among the thread's checkpoints, under the namespaces of
            its waiting tasks (every checkpoint of the thread is listed).

    Raises:
        ValueError: the state's ``references`` and ``reference_nodes`` differ in length.
    """
    snapshot = graph.get_state(config, subgraphs=True)
    if found := _waiting(graph, snapshot):
        return found
    lent = _checkpointer(graph, config)
    if moa is None or lent is None:
        return None
    saved = lent.list({"configurable": {"thread_id": _thread_id(snapshot)}})
    for called in _called(snapshot, saved, lent):
        if found := _waiting(moa, moa.get_state(called), lent):
            return found
    return None


async def apending_review(
    graph: Pregel, config: RunnableConfig, *, moa: Pregel | None = None
) -> PendingReview | None:
    """`pending_review`, for async checkpointers."""
    snapshot = await graph.aget_state(config, subgraphs=True)
    if found := _waiting(graph, snapshot):
        return found
    lent = _checkpointer(graph, config)
    if moa is None or lent is None:
        return None
    thread: RunnableConfig = {"configurable": {"thread_id": _thread_id(snapshot)}}
    saved = [checkpoint async for checkpoint in lent.alist(thread)]
    for called in _called(snapshot, saved, lent):
        if found := _waiting(moa, await moa.aget_state(called), lent):
            return found
    return None


def edit_references(review: PendingReview, edits: Mapping[str, str | None]) -> RunnableConfig:
    """Replace references' texts (a string) or drop them (None); return the new checkpoint.

    Raises:
        ValueError: ``edits`` names a node that wrote none of the references,
            gives something other than text or None, or drops every reference.
    """
    return review.graph.update_state(review.config, _edited(review, edits))


async def aedit_references(
    review: PendingReview, edits: Mapping[str, str | None]
) -> RunnableConfig:
    """`edit_references`, for async checkpointers."""
    return await review.graph.aupdate_state(review.config, _edited(review, edits))


def _waiting(
    graph: Pregel, snapshot: StateSnapshot, lent: BaseCheckpointSaver | None = None
) -> PendingReview | None:
    """The review ``snapshot`` (or a subgraph LangGraph found in it) waits for.

    ``lent``: the checkpointer a called graph's state is read and written with.
    """
    values = snapshot.values if isinstance(snapshot.values, Mapping) else {}
    if AGGREGATOR_NODE in snapshot.next and "reference_nodes" in values:
        config = snapshot.config
        if lent is not None:
            config = {"configurable": {**config["configurable"], CONFIG_KEY_CHECKPOINTER: lent}}
        return PendingReview(graph, config, shown_references(values))
    for task in snapshot.tasks:
        if isinstance(task.state, StateSnapshot) and (found := _waiting(graph, task.state)):
            return found
    return None


def _checkpointer(graph: Pregel, config: RunnableConfig) -> BaseCheckpointSaver | None:
    """The outer graph's checkpointer: its own, or the one its config lends it."""
    lent = graph.checkpointer
    if not isinstance(lent, BaseCheckpointSaver):
        lent = (config.get("configurable") or {}).get(CONFIG_KEY_CHECKPOINTER)
    return lent if isinstance(lent, BaseCheckpointSaver) else None


def _thread_id(snapshot: StateSnapshot) -> str:
    return str(snapshot.config["configurable"]["thread_id"])


def _called(
    snapshot: StateSnapshot, saved: Iterable[CheckpointTuple], lent: BaseCheckpointSaver
) -> list[RunnableConfig]:
    """Where the graphs that ``snapshot``'s waiting tasks called keep their state.

    A durable ``ChatMoA`` called by a task is saved below the task's namespace (at
    any depth, where the task runs a graph of its own), in a segment of its own
    starting ``moa-`` (see ``ChatMoA._call_digest``) and maybe LangGraph's ``|n``.
    """
    above = snapshot.config["configurable"].get("checkpoint_ns") or ""
    tasks = [
        f"{above}|{task.name}:{task.id}" if above else f"{task.name}:{task.id}"
        for task in snapshot.tasks
    ]
    found: dict[str, None] = {}
    for checkpoint in saved:
        namespace = checkpoint.config["configurable"].get("checkpoint_ns") or ""
        named = [part for part in namespace.split("|") if not part.isdigit()]
        if (
            named
            and named[-1].startswith(CALLED_PREFIX)
            and any(namespace.startswith(f"{task}|") for task in tasks)
        ):
            found.setdefault(namespace)
    return [
        {
            "configurable": {
                "thread_id": _thread_id(snapshot),
                "checkpoint_ns": namespace,
                CONFIG_KEY_CHECKPOINTER: lent,
            }
        }
        for namespace in found
    ]


def _edited(review: PendingReview, edits: Mapping[str, str | None]) -> dict[str, list[str]]:
    unknown = [node for node in edits if node not in review.references]
    if unknown:
        names = ", ".join(map(repr, unknown))
        msg = f"no reference was written by {names}: the references are {list(review.references)}"
        raise ValueError(msg)
    wrong = [node for node, text in edits.items() if text is not None and not isinstance(text, str)]
    if wrong:
        msg = f"an edit is a reference's new text or None to drop it; {wrong[0]!r} got neither"
        raise ValueError(msg)
    kept = {node: edits.get(node, text) for node, text in review.references.items()}
    texts = {node: text for node, text in kept.items() if text is not None}
    if not texts:
        msg = "every reference would be dropped: the aggregator needs one to read; keep one"
        raise ValueError(msg)
    return {"references": list(texts.values()), "reference_nodes": list(texts)}
