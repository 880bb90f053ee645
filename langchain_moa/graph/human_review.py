"""Stop before the aggregator, read the references, edit or drop some, resume.

A run stopped there keeps the references in its state (``references``, and
``reference_nodes``: who wrote each). Changing them is LangGraph's own
``update_state``; resuming is ``invoke(None, config)``, which calls only the
aggregator. The aggregator's call record then lists what was changed
(``edited_references``), however the change was made::

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

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from langchain_moa.accounting import ReferenceEdit
from langchain_moa.graph.state import AGGREGATOR_NODE, turn

REVIEW_BEFORE = [AGGREGATOR_NODE]
"""``interrupt_before`` that stops a MoA run where its references can be reviewed (a
list: LangGraph adds it to ``interrupt_after``)."""


def reference_edits(state: Mapping[str, Any]) -> list[ReferenceEdit]:
    """What was changed in the references since the last proposer layer's join wrote them.

    Compared with this run's call records of that layer: a reference whose text
    is not its proposer's answer was edited; a proposer's answer that is not among
    the references (and that no ``reference_filter`` left out) was dropped; a
    reference no proposer of this run wrote was added. Order is not an edit. A run
    that reuses its turn's references (``fanout="per_turn"``) has no records to
    compare with: none are reported.
    """
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
    shown = dict(zip(state.get("reference_nodes", []), state.get("references", []), strict=False))
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
    """The MoA run of ``config``'s thread that waits before its aggregator, if one does.

    Args:
        graph: The MoA graph itself, or an outer graph whose node runs it.
        config: The thread's config (``thread_id``).
        moa: The MoA graph a node runs through a durable ``ChatMoA``
            (``ChatMoA.graph``). LangGraph finds a subgraph only where a node
            holds the compiled graph itself, so a model called in a node is
            looked for under the namespace of each of the thread's waiting tasks.
    """
    snapshot = graph.get_state(config, subgraphs=True)
    if found := _waiting(graph, snapshot):
        return found
    for called, lent in _called(graph, snapshot, moa):
        if moa is not None and (found := _waiting(moa, moa.get_state(called), lent)):
            return found
    return None


async def apending_review(
    graph: Pregel, config: RunnableConfig, *, moa: Pregel | None = None
) -> PendingReview | None:
    """`pending_review`, for async checkpointers."""
    snapshot = await graph.aget_state(config, subgraphs=True)
    if found := _waiting(graph, snapshot):
        return found
    for called, lent in _called(graph, snapshot, moa):
        if moa is not None and (found := _waiting(moa, await moa.aget_state(called), lent)):
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
        nodes, texts = values["reference_nodes"], values.get("references", [])
        config = snapshot.config
        if lent is not None:
            config = {"configurable": {**config["configurable"], CONFIG_KEY_CHECKPOINTER: lent}}
        return PendingReview(graph, config, dict(zip(nodes, texts, strict=True)))
    for task in snapshot.tasks:
        if isinstance(task.state, StateSnapshot) and (found := _waiting(graph, task.state)):
            return found
    return None


def _called(
    graph: Pregel, snapshot: StateSnapshot, moa: Pregel | None
) -> Iterator[tuple[RunnableConfig, BaseCheckpointSaver]]:
    """Where the graphs that ``snapshot``'s waiting tasks called keep their state.

    A task's first subgraph is saved under ``node:task_id`` (below the thread's
    own namespace), the next ones under ``|1``, ``|2``... (LangGraph 1.x's
    ``PregelScratchpad.subgraph_counter``): read until a namespace holds nothing.
    """
    checkpointer = graph.checkpointer
    if moa is None or not isinstance(checkpointer, BaseCheckpointSaver):
        return
    configurable = snapshot.config["configurable"]
    above = configurable.get("checkpoint_ns") or ""
    for task in snapshot.tasks:
        first = f"{above}|{task.name}:{task.id}" if above else f"{task.name}:{task.id}"
        for count in itertools.count():
            namespace = first if count == 0 else f"{first}|{count}"
            config: RunnableConfig = {
                "configurable": {
                    "thread_id": configurable["thread_id"],
                    "checkpoint_ns": namespace,
                    CONFIG_KEY_CHECKPOINTER: checkpointer,
                }
            }
            if checkpointer.get_tuple(config) is None:
                break
            yield config, checkpointer


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
