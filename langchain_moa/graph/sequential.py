"""Self-MoA-Seq's aggregator: synthesis over a sliding window of the references.

Li et al. (2025, arXiv 2502.00674) aggregate many samples of one model a few at
a time: the first ``window`` references, then the synthesis so far with the
next ``window - 1``, and so on, so the samples may outnumber what one context
holds. Each step is a call of the aggregator (with its fallbacks), recorded
as ``aggregator/step-N``; only the last step is the answer, and only it is
streamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import cast

from langchain_core.messages import AnyMessage
from langchain_core.runnables import RunnableConfig

from langchain_moa.graph.final import Aggregator, plain_aggregator
from langchain_moa.graph.plan import Plan
from langchain_moa.graph.prompts import tool_turns_as_text
from langchain_moa.graph.state import AGGREGATOR_KWARGS, STREAM_ANSWER, MoAState
from langchain_moa.stacks import SelfMoASeq


def windows(count: int, window: int) -> list[range]:
    """The references each step reads (by position), the carried synthesis aside.

    The first step reads ``window`` of them; every later one ``window - 1``, next
    to the synthesis so far. ``count <= window`` is one step.
    """
    steps = [range(min(count, window))]
    start = window
    while start < count:
        steps.append(range(start, min(count, start + window - 1)))
        start += window - 1
    return steps


@dataclass(frozen=True)
class SequentialAggregator(Aggregator):
    """The aggregator, called once per window; the last window's answer is the answer."""

    window: int = 3
    """References per call, the carried synthesis included."""

    def step(self, number: int, *, last: bool) -> Aggregator:
        """The plain aggregator that makes step ``number`` (1-based).

        Steps before the last are recorded as ``aggregator/step-N``; the last is
        the aggregator's answer, under its own name.
        """
        # Room for each step's fallbacks and its last resort: indexes stay distinct.
        index = (number - 1) * (2 + len(self.fallbacks))
        name = self.name if last else f"{self.name}/step-{number}"
        return plain_aggregator(self, name=name, index=index)

    def step_state(
        self, state: MoAState, carried: tuple[str, str] | None, picked: range, *, last: bool
    ) -> MoAState:
        """What one step reads: the synthesis so far (node, text), then its window's."""
        references = state.get("references", [])
        nodes = state.get("reference_nodes", [])
        shown = [references[i] for i in picked]
        shown_nodes = [nodes[i] for i in picked] if len(nodes) == len(references) else []
        if carried is not None:
            shown = [carried[1], *shown]
            shown_nodes = [carried[0], *shown_nodes] if shown_nodes else []
        stepped: MoAState = {**state, "references": shown, "reference_nodes": shown_nodes}
        if not last:
            # Only the answer may call tools: a step's synthesis is text for the next,
            # and a provider refuses tool turns in a call that defines no tools.
            readable = tool_turns_as_text(state["messages"], state.get("tools", []))
            stepped["messages"] = cast("list[AnyMessage]", readable)
            stepped.pop("tools", None)
        return stepped

    @staticmethod
    def quiet(config: RunnableConfig) -> RunnableConfig:
        """The config of a step before the last: its synthesis is not streamed out.

        Nor does it take the final answer's call options (``stop``, a caller's
        ``max_tokens``): they would cut a synthesis that is only read.
        """
        configurable = {
            **(config.get("configurable") or {}),
            STREAM_ANSWER: False,
            AGGREGATOR_KWARGS: {},
        }
        return {**config, "configurable": configurable}

    def plan(self, state: MoAState) -> Sequence[range]:
        """This run's windows."""
        return windows(len(state.get("references", [])), self.window)

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node: every step in turn; the last one's update, with every step's calls."""
        steps, calls = self.plan(state), []
        carried: tuple[str, str] | None = None
        if len(steps) == 1:
            return self.step(1, last=True)(state, config)
        for number, picked in enumerate(steps, start=1):
            last = number == len(steps)
            node = self.step(number, last=last)
            sub = self.step_state(state, carried, picked, last=last)
            update = node(sub, config if last else self.quiet(config))
            calls.extend(update["calls"])
            carried = (node.name, update["answer"].text)
        return {**update, "calls": calls}

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        """``__call__``, for async runs."""
        steps, calls = self.plan(state), []
        carried: tuple[str, str] | None = None
        if len(steps) == 1:
            return await self.step(1, last=True).acall(state, config)
        for number, picked in enumerate(steps, start=1):
            last = number == len(steps)
            node = self.step(number, last=last)
            sub = self.step_state(state, carried, picked, last=last)
            update = await node.acall(sub, config if last else self.quiet(config))
            calls.extend(update["calls"])
            carried = (node.name, update["answer"].text)
        return {**update, "calls": calls}


def plan(strategy: SelfMoASeq) -> Plan:
    """The aggregator reads the samples ``window`` at a time."""
    return Plan(final=partial(SequentialAggregator, window=strategy.window))
