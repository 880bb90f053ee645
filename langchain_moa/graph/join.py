"""The nodes that only compute: the first check of a run, and each layer's join.

`Begin` refuses a conversation there is nothing to answer in and names the run;
`Join` waits for its layer, checks enough succeeded, filters, orders and passes the
references on, and ends the proposer layers early when they agree.
"""

from __future__ import annotations

import random
import secrets
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from langchain_core.runnables import RunnableConfig

from langchain_moa.accounting import ModelCall
from langchain_moa.graph.agreement import Agreement, Verdict, acheck
from langchain_moa.graph.calls import configurable
from langchain_moa.graph.defence import cluster_filter
from langchain_moa.graph.errors import LayerFailedError
from langchain_moa.graph.state import (
    SHUFFLE_SEED,
    Dropped,
    EarlyStopped,
    MoAState,
    check_conversation,
    turn,
)
from langchain_moa.stacks import ReferenceFilter

T = TypeVar("T")


@dataclass(frozen=True)
class Begin:
    """The first node: refuse a conversation there is nothing to answer in; name the run.

    Given the turn's references (``reuse``), it passes them to the aggregator.
    With ``shuffle``, it draws the run's seed for reference orders (or takes
    ``configurable["moa_shuffle_seed"]``, to replay a run).
    """

    shuffle: bool = False

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node.

        Raises:
            ValueError: the conversation is empty, only a system message, or ends
                with the assistant's message.
        """
        check_conversation(state["messages"])
        if state.get("tool_choice") is not None:
            warnings.warn(
                "tool_choice in the graph's input is deprecated: give it with the "
                'aggregator\'s other call options, configurable["moa_aggregator_kwargs"]',
                DeprecationWarning,
                stacklevel=2,
            )
        seed = None
        if self.shuffle:
            given = configurable(config).get(SHUFFLE_SEED)
            seed = int(given) if given is not None else secrets.randbits(32)
        # The key this run's layer clocks are kept under (concurrent runs share a graph).
        # Cleared always, so that a thread's next run proposes again unless told otherwise.
        update: dict[str, Any] = {
            "run": uuid.uuid4().hex,
            "reused": False,
            "reuse": None,
            "stopped": None,
            "ranking": None,
            "shuffle_seed": seed,
        }
        # Only this turn's: one left in a thread by a run that failed is another turn's.
        if (reuse := state.get("reuse")) and reuse["turn"] == turn(state):
            update |= {
                "references": reuse["references"],
                "reference_nodes": reuse["nodes"],
                "reused": True,
            }
        return update


begin = Begin()
"""The first node of a stack that keeps the proposers' order."""


@dataclass(frozen=True)
class Join:
    """Waits for a layer, checks enough succeeded, passes their texts on.

    With ``reference_filter`` it first drops the references that disagree
    with the majority (``defence.cluster_filter``) and records which. With
    ``shuffle`` it orders the references by the run's seed. With ``agreement``
    (early stop, not on the last proposer layer) it ends the proposer layers
    when the references agree, and records where and what it saved.
    """

    layer: int
    min_proposers: int
    reference_filter: ReferenceFilter | None = None
    shuffle: bool = False
    agreement: Agreement | None = None
    """Early stop's test of the references; None runs every layer."""
    later_calls: int = 0
    """Proposer calls of the layers after this one: what stopping here saves."""

    def __call__(self, state: MoAState) -> dict:
        """The node: this run's records of the layer become the next references.

        Raises:
            LayerFailedError: fewer than ``min_proposers`` answered; the message
                names each failure and its reason.
        """
        update, ok = self.joined(state)
        if self.agreement is not None:
            update["stopped"] = self.stopped(state, self.agreement(update["references"]), ok)
        return update

    async def acall(self, state: MoAState) -> dict:
        """The node, for async runs: embeddings are computed without blocking the loop."""
        update, ok = self.joined(state)
        if self.agreement is not None:
            verdict = await acheck(self.agreement, update["references"])
            update["stopped"] = self.stopped(state, verdict, ok)
        return update

    def joined(self, state: MoAState) -> tuple[dict, list[ModelCall]]:
        """The update with the layer's references, and the layer's successful calls.

        Raises:
            LayerFailedError: fewer than ``min_proposers`` answered.
        """
        # Only this run's calls: a thread keeps earlier runs' calls too.
        now = turn(state)
        calls = sorted(
            (c for c in state["calls"] if c["layer"] == self.layer and c["turn"] == now),
            key=lambda c: c["index"],
        )
        ok = [c for c in calls if c["error"] is None]
        if len(ok) < self.min_proposers:
            failures = "; ".join(
                f"{c['node']}: {c['reason']}: {c['error']}" for c in calls if c["error"]
            )
            msg = (
                f"layer {self.layer}: {len(ok)} of {len(calls)} proposers succeeded, "
                f"min_proposers is {self.min_proposers}. Failures: {failures}"
            )
            raise LayerFailedError(msg)
        texts = [cast("str", c["text"]) for c in ok]
        kept = list(range(len(ok)))
        if self.reference_filter == "cluster":
            kept = cluster_filter(texts)
        dropped = [
            Dropped(turn=now, layer=self.layer, node=c["node"], why="cluster filter: an outlier")
            for index, c in enumerate(ok)
            if index not in kept
        ]
        kept = self.ordered(state, kept)
        update = {
            "references": [texts[i] for i in kept],
            "reference_nodes": [ok[i]["node"] for i in kept],
            "dropped": dropped,
        }
        return update, ok

    def ordered(self, state: MoAState, items: list[T]) -> list[T]:
        """``items`` in the order this layer's references are shown in this run.

        With ``shuffle``, one order per layer and run, replayed from the run's seed.
        """
        if self.shuffle:
            items = list(items)
            random.Random(f"{state.get('shuffle_seed')}/{self.layer}").shuffle(items)  # noqa: S311 - an order, not a secret
        return items

    def stopped(
        self, state: MoAState, verdict: Verdict, ok: list[ModelCall]
    ) -> EarlyStopped | None:
        """Where the run stops, when the references agree; None to go on."""
        if not verdict.agree:
            return None
        tokens = [c["usage"]["total_tokens"] for c in ok if c["usage"] is not None]
        per_call = sum(tokens) / len(tokens) if tokens and len(tokens) == len(ok) else None
        return EarlyStopped(
            turn=turn(state),
            layer=self.layer,
            detail=verdict.detail,
            score=verdict.score,
            calls_saved=self.later_calls,
            tokens_saved=None if per_call is None else round(per_call * self.later_calls),
        )
