"""Every strategy's `Plan`, by its class: the one place the builder asks.

The stack layer describes a strategy (``langchain_moa.stacks.strategy``: its
name, its options, which models propose); the module of the strategy's own
nodes says how it runs (a ``plan`` function each: ``graph.rank``,
``graph.sequential``, ``graph.review``, ``graph.staircase``); `PLANS` ties the
two. A strategy of your own is one module::

    from langchain_moa.graph.final import Aggregator
    from langchain_moa.graph.plan import Plan
    from langchain_moa.graph.strategies import plans
    from langchain_moa.stacks import Strategy, register

    @register                     # selectable by name in stack files and --strategy
    class Terse(Strategy):
        name = "terse"

    @plans(Terse)
    def terse(strategy: Terse) -> Plan:
        return Plan(final=Aggregator, prompt="Answer in one sentence, from these:")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from langchain_moa.graph import rank, review, sequential, staircase
from langchain_moa.graph.final import Aggregator
from langchain_moa.graph.plan import Plan
from langchain_moa.stacks import (
    Rank,
    RankThenSynthesize,
    SelfMoA,
    SelfMoASeq,
    Staircase,
    Strategy,
    Synthesize,
)

S = TypeVar("S", bound=Strategy)

PlanOf = Callable[[Any], Plan]
"""A strategy's plan, made of its options."""


def synthesize(_: Strategy) -> Plan:
    """The paper's MoA: the aggregator writes a new answer from the references."""
    return Plan(final=Aggregator)


PLANS: dict[type[Strategy], PlanOf] = {
    Strategy: synthesize,  # a strategy of your own without a plan: the paper's wiring
    Synthesize: synthesize,
    SelfMoA: synthesize,  # its own part is which models propose: SelfMoA.proposers
    SelfMoASeq: sequential.plan,
    Rank: rank.plan,
    RankThenSynthesize: review.plan,
    Staircase: staircase.plan,
}
"""Every strategy class's plan; a subclass takes its nearest base's."""


def plans(cls: type[S]) -> Callable[[Callable[[S], Plan]], Callable[[S], Plan]]:
    """Give the strategy class ``cls`` its plan (a decorator)."""

    def given(plan: Callable[[S], Plan]) -> Callable[[S], Plan]:
        PLANS[cls] = plan
        return plan

    return given


def plan_for(strategy: Strategy) -> Plan:
    """The plan the builder wires for ``strategy``.

    A strategy that overrides ``Strategy.final_node`` gets the paper's wiring with
    that node; otherwise the plan of its class, or of its nearest base that has one
    (``Strategy``'s is the paper's).
    """
    if type(strategy).final_node is not Strategy.final_node:
        return Plan(final=strategy.final_node)
    cls = next(cls for cls in type(strategy).__mro__ if cls in PLANS)
    return PLANS[cls](strategy)
