"""Strategies: how a stack's proposers are chosen and their answers become one.

A stack names its strategy (``strategy="self-moa"``, ``strategy: {name:
self-moa-seq, window: 3}`` in a file, ``--strategy`` on the command line) or
is given one of these objects. They describe: which models propose
(`Strategy.proposers`, `Strategy.layer_sizes`, asked by the model factory and
the stack spec) and the options of the graph's plan, which
``langchain_moa.graph.strategies`` holds for each one (the stack layer never
imports the graph). To write your own, subclass `Strategy`, `register` it, and
give it a plan there (``langchain_moa.graph.strategies.plans``), or override
``final_node`` for a strategy that only changes the node writing the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, NoReturn

from langchain_core.language_models import BaseChatModel
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydantic_core import PydanticCustomError


class Strategy(BaseModel):
    """The base of every strategy: a name and its options.

    Subclass it for a strategy of your own: set ``name`` and override
    ``final_node``, which gets the keyword arguments of a
    `langchain_moa.graph.final.Final` node (layer, model, prompt, policy,
    fallbacks...) and returns the node that writes the answer, e.g. an
    ``Aggregator`` with a prompt of your own, or a ``Final`` subclass.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: ClassVar[str] = "custom"
    """What stack files and the command line call it."""

    def final_node(self, **parts: Any) -> Any:
        """The node that writes the answer (only strategies of your own need it).

        It returns a ``langchain_moa.graph.final.Final`` (not named in the
        signature: the stack spec must not import the graph).

        Raises:
            NotImplementedError: always, for a strategy that does not override it.
        """
        msg = f"strategy {self.name!r} must override final_node"
        raise NotImplementedError(msg)

    def proposers(
        self,
        layers: list[list[BaseChatModel]],
        aggregator: BaseChatModel,  # noqa: ARG002 - Self-MoA's default model
        build: Callable[[Any, str], BaseChatModel],  # noqa: ARG002 - for an option's model
    ) -> list[list[BaseChatModel]]:
        """The proposer layers the stack's models give, as this strategy chooses them.

        ``build(entry, where)`` makes a chat model of a stack entry (an option's
        model), its errors naming ``where``. The stack's own, by default.
        """
        return layers

    def layer_sizes(self, sizes: list[int]) -> list[int]:
        """How many proposers each layer has, given how many models the stack lists."""
        return sizes

    def options(self) -> dict[str, Any]:
        """The name and the options that were set: what metadata and caches key on."""
        # Not model_dump: a chat model given as an option would be serialized (and warn).
        given = {k: getattr(self, k) for k in sorted(self.model_fields_set)}
        return {"name": self.name, **{k: v if _plain(v) else repr(v) for k, v in given.items()}}


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class Synthesize(Strategy):
    """The paper's MoA: the aggregator writes a new answer from the last layer's."""

    name: ClassVar[str] = "synthesize"


class Rank(Strategy):
    """The paper's LLM-ranker baseline: the aggregator picks one answer by number."""

    name: ClassVar[str] = "rank"


Samples = Annotated[StrictInt, Field(ge=1)]
SelfModel = StrictStr | InstanceOf[BaseChatModel] | None


class SelfMoA(Strategy):
    """Self-MoA (Li et al., 2025, arXiv 2502.00674): one model, sampled many times.

    Every proposer slot of every layer is a draw of ``model`` (each with its own
    seed), then synthesis as in the paper. With its best model as proposer and
    aggregator, Self-MoA beat mixed-model MoA by 6.6 points of LC win rate on
    AlpacaEval 2.0: quality of the proposers mattered more than their variety.
    """

    name: ClassVar[str] = "self-moa"

    model: SelfModel = None
    """The model sampled: a ``"provider:model"`` string or a chat model; None is
    the stack's aggregator."""
    samples: Samples | None = None
    """Draws per layer; None keeps each layer's size (same calls as the mix it replaces)."""

    def proposers(
        self,
        layers: list[list[BaseChatModel]],
        aggregator: BaseChatModel,
        build: Callable[[Any, str], BaseChatModel],
    ) -> list[list[BaseChatModel]]:
        """Every proposer slot a draw of ``model`` (the aggregator when None)."""
        model = aggregator if self.model is None else build(self.model, "strategy.model")
        return [draws(model, self.samples or len(layer)) for layer in layers]

    def layer_sizes(self, sizes: list[int]) -> list[int]:
        """``samples`` in every layer, when set."""
        return sizes if self.samples is None else [self.samples] * len(sizes)


def draws(model: BaseChatModel, count: int) -> list[BaseChatModel]:
    """``count`` samples of one model: the single-proposer setting, and Self-MoA's.

    Copies differ by seed where the model has one (the seed after the model's
    own, then the next...); otherwise they skip the LLM cache, which would hand
    every copy the same answer.
    """
    if "seed" in type(model).model_fields:
        base = getattr(model, "seed", None) or 0
        return [model.model_copy(update={"seed": base + 1 + i}) for i in range(count)]
    return [model] + [model.model_copy(update={"cache": False}) for _ in range(count - 1)]


class SelfMoASeq(SelfMoA):
    """Self-MoA-Seq (same paper): synthesis over a sliding window of the samples.

    The aggregator reads ``window`` references at a time: the first window's
    answers, then its own synthesis so far with the next ``window - 1``, until
    every sample was read. So the samples may outnumber what one context holds;
    only the last step's answer is streamed.
    """

    name: ClassVar[str] = "self-moa-seq"

    window: Annotated[StrictInt, Field(ge=2)] = 3
    """References per aggregator call, the carried synthesis included."""


class RankThenSynthesize(Strategy):
    """Anonymised peer review, as llm-council does it, then synthesis.

    Each model of the last proposer layer ranks the other answers, labelled
    ``Response A``, ``Response B``... and never its own, ending with a ``FINAL
    RANKING:`` list; the rankings are averaged, and the aggregator synthesizes
    with the references in that order and the aggregate ranking stated.
    """

    name: ClassVar[str] = "rank-then-synthesize"


class Staircase(Strategy):
    """Staircase streaming (Wang et al., 2025, arXiv 2510.05059), experimental.

    The aggregator starts writing before the last proposer layer has finished:
    it reads the first ``step_tokens`` of each proposal (marked unfinished),
    writes up to ``step_tokens`` of the answer, then continues it as more of
    the proposals arrive, until a last step finishes the answer with the
    complete proposals. The paper reports up to 93% lower time to first token
    at equal quality. It runs the last proposer layer inside the aggregator's
    node (their records keep their ``layerN/<model>`` names); every step is a
    call of its own, recorded as ``aggregator/step-N``, the last as
    ``aggregator``. Each step reads every reference again: it costs more input
    tokens than ``synthesize``.
    """

    name: ClassVar[str] = "staircase"

    step_tokens: Annotated[StrictInt, Field(ge=1)] = 32
    """Tokens each still-running proposal must have grown by before the next step
    (chunks of a stream, a token each on OpenAI-compatible servers); also what a step
    before the last writes, then on to the end of its sentence (twice as many at
    most), before the proposals are read again."""
    max_partial_steps: Annotated[StrictInt, Field(ge=0)] | None = None
    """At most this many steps on unfinished proposals, then the answer waits for
    the complete ones; None for no limit, 0 is plain synthesis."""


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Synthesize, Rank, SelfMoA, SelfMoASeq, RankThenSynthesize, Staircase)
}
"""The built-in strategies by name."""


def register(cls: type[Strategy]) -> type[Strategy]:
    """Make a strategy class selectable by its ``name`` (stack files, ``--strategy``)."""
    STRATEGIES[cls.name] = cls
    return cls


def parse_strategy(value: Any) -> Strategy:
    """A strategy from its name, a table ``{name: ..., option: ...}``, or itself.

    Raises:
        ValueError: an unknown name (the message lists the known ones) or not
            a strategy at all. Options are checked by the strategy's class.
    """
    if isinstance(value, Strategy):
        return value
    options: dict[str, Any] = {}
    if isinstance(value, Mapping):
        options = {str(k): v for k, v in value.items() if k != "name"}
        value = value.get("name")
    if not isinstance(value, str):
        _fail(
            "expected a strategy name, a table with a name and its options, or a "
            f"Strategy, got {type(value).__name__}"
        )
    if value not in STRATEGIES:
        _fail(f"unknown strategy {value!r}; choose from {', '.join(sorted(STRATEGIES))}")
    try:
        return STRATEGIES[value](**options)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].lower()}" for e in error.errors()
        )
        _fail(f"{value}: {problems}")


def _fail(problem: str) -> NoReturn:
    # Shown as written, as the stack spec's own rules are (no "Value error, ").
    raise PydanticCustomError("moa", "{problem}", {"problem": problem})  # noqa: EM101 - a template


def strategy_names() -> Sequence[str]:
    """Every strategy a name selects, sorted."""
    return sorted(STRATEGIES)
