"""Rank-then-synthesize: anonymised peer review of the last layer, then synthesis.

As llm-council does it: each model of the last proposer layer reads the other
models' answers, labelled ``Response A``, ``Response B``... (never its own, and
never who wrote which), judges them, and ends with a ``FINAL RANKING:`` list.
The review's join averages each answer's place over the rankings that could
be read, and the aggregator synthesizes with the references best first and the
ranking stated in its prompt.

The review is a layer of its own between the last proposer layer and the
aggregator, so its calls are accounted as one more parallel layer.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig

from langchain_moa.graph.final import Aggregator
from langchain_moa.graph.limits import LayerClocks
from langchain_moa.graph.plan import Plan, Wiring
from langchain_moa.graph.prompts import Prompt
from langchain_moa.graph.proposer import Proposer
from langchain_moa.graph.runnable import as_node
from langchain_moa.graph.state import AGGREGATOR_NODE, MoAState, Ranking, role, turn
from langchain_moa.stacks import RankThenSynthesize, model_label

REVIEW_PROMPT = (
    "Several anonymous responses were written to the question below. Judge them.\n\n"
    "Question:\n{question}\n\n"
    "Responses:\n{responses}\n\n"
    "First say briefly what each response does well and what it gets wrong. Then end "
    "your reply with a line reading exactly 'FINAL RANKING:' followed by the responses "
    "from best to worst, one per line, numbered, each line naming only the response's "
    "label, like this:\n"
    "FINAL RANKING:\n1. Response C\n2. Response A\n3. Response B"
)
"""What each reviewer is asked: ``{question}`` and ``{responses}`` are filled in."""

RANKED_SYNTHESIS_NOTE = (
    "An anonymous peer review ranked the responses below; they are listed best first "
    "(mean place in the reviewers' rankings, 1 is best: {places}).\n\n"
)
"""Put before the aggregator's prompt when the review gave a ranking."""

_LABEL = re.compile(r"Response\s+([A-Z]+)\b")


def letters(position: int) -> str:
    """``A``, ``B``... ``Z``, ``AA``, ``AB``...: as spreadsheet columns are named."""
    name = ""
    position += 1
    while position:
        position, rest = divmod(position - 1, 26)
        name = string.ascii_uppercase[rest] + name
    return name


def position_of(name: str) -> int:
    """The position `letters` names."""
    number = 0
    for letter in name:
        number = number * 26 + string.ascii_uppercase.index(letter) + 1
    return number - 1


def label(position: int) -> str:
    """The anonymous label of the answer at ``position``: ``Response A``, ``B``..."""
    return f"Response {letters(position)}"


def parse_ranking(reply: str, count: int) -> list[int] | None:
    """The positions (0-based) a review ranks, best first; None when it gives no ranking.

    The labels after the last ``FINAL RANKING:`` are read in order; without that
    line, none (a review that only mentions labels has not ranked them). Labels
    beyond ``count`` and repeats are skipped.
    """
    marker = reply.upper().rfind("FINAL RANKING")
    if marker < 0:
        return None
    order: list[int] = []
    for name in _LABEL.findall(reply[marker:]):
        position = position_of(name)
        if position < count and position not in order:
            order.append(position)
    return order or None


def aggregate(rankings: Sequence[Sequence[str]], nodes: Sequence[str]) -> tuple[list[str], dict]:
    """The nodes best first by mean place, and each node's mean place.

    A node no ranking names goes last (in its given order): nothing speaks for it.
    Ties keep the given order.
    """
    places: dict[str, list[int]] = {node: [] for node in nodes}
    for ranking in rankings:
        for place, node in enumerate(ranking, start=1):
            places[node].append(place)
    mean = {node: sum(p) / len(p) for node, p in places.items() if p}
    unranked = len(nodes) + 1
    order = sorted(nodes, key=lambda node: mean.get(node, unranked))
    return order, mean


@dataclass(frozen=True)
class Reviewer(Proposer):
    """One model's review of the other answers of the last layer."""

    own: frozenset[str] = frozenset()
    """The nodes whose answers are this model's own (one per proposer layer): not shown."""

    def others(self, state: MoAState) -> list[tuple[str, str]]:
        """The answers it reviews: (node, text), its own left out."""
        pairs = zip(state.get("reference_nodes", []), state.get("references", []), strict=True)
        return [(node, text) for node, text in pairs if node not in self.own]

    def inputs(
        self,
        state: MoAState,
        model: BaseChatModel | None = None,  # noqa: ARG002 - the node's own model reviews
    ) -> tuple[list[BaseMessage], str | None]:
        """The review request: the question and the labelled answers, one message."""
        question = next((m.text for m in reversed(state["messages"]) if role(m) == "human"), "")
        responses = "\n\n".join(
            f"{label(position)}:\n{text}" for position, (_, text) in enumerate(self.others(state))
        )
        text = REVIEW_PROMPT.format(question=question, responses=responses)
        return [HumanMessage(content=text)], None

    def shown(self, state: MoAState | None) -> list[str] | None:
        """The answers it reviewed, in the order labelled."""
        return None if state is None else [node for node, _ in self.others(state)]

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node; no review when there is nothing but its own answer to read."""
        return super().__call__(state, config) if self.others(state) else {"calls": []}

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        """``__call__``, for async runs."""
        return await super().acall(state, config) if self.others(state) else {"calls": []}


@dataclass(frozen=True)
class ReviewJoin:
    """Reads every review's ranking; orders the references by their mean place."""

    layer: int

    def __call__(self, state: MoAState) -> dict:
        """The node: the references best first, and the aggregate ranking."""
        now = turn(state)
        nodes = list(state.get("reference_nodes", []))
        texts = dict(zip(nodes, state.get("references", []), strict=True))
        rankings = []
        for call in state["calls"]:
            if call["layer"] != self.layer or call["turn"] != now or call["text"] is None:
                continue
            shown = call.get("references") or []
            positions = parse_ranking(call["text"], len(shown))
            if positions is not None:
                rankings.append([shown[p] for p in positions])
        order, mean = aggregate(rankings, nodes)
        return {
            "references": [texts[node] for node in order],
            "reference_nodes": order,
            "ranking": Ranking(turn=now, order=order, mean_position=mean, rankings=len(rankings)),
        }


@dataclass(frozen=True)
class RankedAggregator(Aggregator):
    """The aggregator of rank-then-synthesize: its prompt states the review's ranking."""

    def prompt_for(self, state: MoAState) -> Prompt:
        """The stack's prompt text with the ranking added; a callable prompt as it is."""
        ranking = state.get("ranking")
        if not isinstance(self.prompt, str) or not ranking or not ranking["rankings"]:
            return self.prompt
        mean = ranking["mean_position"]
        places = ", ".join(
            f"{number}. {mean[node]:.2f}" if node in mean else f"{number}. unranked"
            for number, node in enumerate(state.get("reference_nodes", []), start=1)
        )
        return RANKED_SYNTHESIS_NOTE.format(places=places) + self.prompt


def plan(_: RankThenSynthesize) -> Plan:
    """A review layer of the last proposer layer's models, then the ranked synthesis."""
    return Plan(final=RankedAggregator, between=add_review)


def review_names(last_layer: Sequence[str]) -> list[str]:
    """``review/<model>`` for each ``layerN/<model>`` of the last layer."""
    return [f"review/{name.split('/', 1)[1]}" for name in last_layer]


def add_review(wiring: Wiring) -> list[str]:
    """The review layer: a reviewer per model of the last layer, their join, the edges."""
    stack, names, builder = wiring.stack, wiring.names, wiring.builder
    layer = len(stack.layers) + 1
    reviewers = review_names(names[-1])
    policy, clocks = stack.spec.policy(len(stack.layers)), LayerClocks()
    for index, (node_name, model) in enumerate(zip(reviewers, stack.layers[-1], strict=True)):
        own = own_nodes(model, index, stack.layers, names)
        reviewer = Reviewer(
            layer, index, node_name, model, "", policy, clocks=clocks, own=own, **wiring.common
        )
        builder.add_node(node_name, as_node(reviewer, reviewer.acall, node_name))
    join = "review/join"
    builder.add_node(join, as_node(ReviewJoin(layer), None, join))
    builder.add_edge(reviewers, join)
    builder.add_edge(join, AGGREGATOR_NODE)
    return reviewers


def own_nodes(
    model: BaseChatModel,
    index: int,
    layers: Sequence[Sequence[BaseChatModel]],
    names: Sequence[Sequence[str]],
) -> frozenset[str]:
    """The nodes whose answers are ``model``'s own, in whichever layer the proposers stopped.

    The same instance, else the same model by name; where a layer samples one
    model several times (Self-MoA), the draw in the same place.
    """
    own: set[str] = set()
    for models, layer_names in zip(layers, names, strict=True):
        same = [j for j, m in enumerate(models) if m is model] or [
            j for j, m in enumerate(models) if model_label(m) == model_label(model)
        ]
        if len(same) > 1:
            same = [index] if index in same else []
        own.update(layer_names[j] for j in same)
    return frozenset(own)
