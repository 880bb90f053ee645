"""`Plan`: what a strategy asks of the graph builder.

The builder wires every stack the same way (``begin``, a node per proposer, a
join per layer, the node that writes the answer) and asks the strategy's plan
(``langchain_moa.graph.strategies``) only for what differs: the answer's node,
its default prompt, proposer layers that node runs itself, nodes of the
strategy's own between the proposer layers and it, and a stop before it that
cannot work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.graph import StateGraph

from langchain_moa.graph.final import Final
from langchain_moa.graph.prompts import AGGREGATE_AND_SYNTHESIZE_PROMPT, Prompt
from langchain_moa.stacks import Stack


@dataclass(frozen=True)
class Wiring:
    """What a plan's own nodes are wired from: the graph so far and the stack."""

    builder: StateGraph
    """The graph being built, with every proposer layer's nodes."""
    stack: Stack
    """The stack, its models built."""
    names: Sequence[Sequence[str]]
    """Each proposer layer's node names (``layerN/<model>``)."""
    common: Mapping[str, Any]
    """What every model node gets (rates, throttles, the reference format...)."""


@dataclass(frozen=True)
class Plan:
    """How one strategy's graph differs from the paper's MoA."""

    final: Callable[..., Final]
    """Makes the node that writes the answer, from the keyword arguments of a
    ``Final`` node (layer, model, prompt, policy, fallbacks...)."""
    prompt: Prompt = AGGREGATE_AND_SYNTHESIZE_PROMPT
    """The answer's prompt when the stack sets none."""
    inner_layers: int = 0
    """How many of the last proposer layers the answer's node runs itself: they
    get no nodes, and their proposers and join are handed to ``final`` as
    ``proposers`` and ``join``."""
    between: Callable[[Wiring], list[str]] | None = None
    """Adds the strategy's own nodes (one layer) between the last proposer
    layer's join and the answer's node, wiring them to the answer; returns the
    nodes the join leads to."""
    no_stop_before_final: str | None = None
    """Why ``interrupt_before`` the answer's node cannot work, or None if it can."""
