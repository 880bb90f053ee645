"""``build_moa_graph`` wires plain nodes into a LangGraph ``StateGraph``.

::

    START -> begin -> layer1/<model> ... -> layer1/join -> layer2/<model> ... -> layer2/join
          -> aggregator -> END

(``begin`` goes straight to the aggregator when the run reuses its turn's
references: ``MoAInput.reuse``.)

Proposers of a layer run concurrently; LangGraph starts a join only when every
proposer of its layer has written its call record, so the next layer sees all
of them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from functools import wraps
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

# Private in langgraph 1.x (what add_node makes of a plain function), hence the <2 pin:
# langchain-core's public RunnableLambda reads the function's signature on every call.
from langgraph._internal._runnable import RunnableCallable
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from langchain_moa.graph import agreement
from langchain_moa.graph.human_review import anoting_edits, noting_edits
from langchain_moa.graph.limits import LayerClocks
from langchain_moa.graph.nodes import Aggregator, Begin, Final, Join, Proposer, Ranker
from langchain_moa.graph.prompts import AGGREGATE_AND_SYNTHESIZE_PROMPT, RANK_PROMPT, Prompt
from langchain_moa.graph.review import RankedAggregator, Reviewer, ReviewJoin
from langchain_moa.graph.sequential import SequentialAggregator
from langchain_moa.graph.staircase import StaircaseAggregator
from langchain_moa.graph.state import AGGREGATOR_NODE, BEGIN_NODE, MoAInput, MoAOutput, MoAState
from langchain_moa.graph.throttle import Throttles
from langchain_moa.stacks import (
    Rank,
    RankThenSynthesize,
    SelfMoASeq,
    Stack,
    StackError,
    StackSpec,
    Strategy,
    build_stack,
    model_label,
)
from langchain_moa.stacks.strategy import Staircase

T = TypeVar("T")


def node_slug(label: str) -> str:
    """A short node-name fragment: the last path part, lower case, safe characters.

    LangGraph reserves ``:`` and ``|`` in node names, and ``/`` separates the
    layer from the model in ours.
    """
    tail = label.rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower()
    return re.sub(r"[^a-z0-9._-]+", "-", tail).strip("-") or "model"


def _node_names(layer: int, models: Sequence[BaseChatModel]) -> list[str]:
    """``layer{n}/{model}``, numbered where a model repeats in the layer."""
    slugs = [node_slug(model_label(m)) for m in models]
    names = []
    for index, slug in enumerate(slugs):
        repeated = slugs.count(slug) > 1 or slug == "join"
        suffix = f"-{slugs[:index].count(slug) + 1}" if repeated else ""
        names.append(f"layer{layer}/{slug}{suffix}")
    return names


def _node(
    func: Callable[..., T],
    afunc: Callable[..., Awaitable[T]] | None,
    name: str,
) -> Runnable:
    """A node with a sync and an async body, as LangGraph makes one of a plain function.

    LangGraph's own ``RunnableCallable`` reads the functions' signatures once;
    langchain-core's ``RunnableLambda`` reads them again on every call (a
    quarter of a millisecond per node, langchain-core 1.x). Without ``afunc``,
    async runs call ``func`` as it is: it must only compute (``begin``, a join),
    where LangGraph would hand a plain function to a thread on every call.
    """

    async def computed(*args: Any, **kwargs: Any) -> T:
        return func(*args, **kwargs)

    # LangGraph traces the node already (its RunnableSeq's run): a run of the
    # function's own inside it would double the callback work of every call.
    return RunnableCallable(func, afunc or wraps(func)(computed), name=name, trace=False)


def build_moa_graph(
    layers: Sequence[Sequence[Any]],
    aggregator: Any,
    *,
    prompt: Prompt | None = None,
    min_proposers: int = 1,
    strategy: str | Strategy = "synthesize",
    name: str = "moa",
    **compile_options: Any,
) -> CompiledStateGraph:
    """Build the Mixture-of-Agents graph.

    Args:
        layers: The proposer layers, each a list of model entries: chat
            models, ``"provider:model"`` strings or ``ModelConfig``; a model
            may repeat.
        aggregator: The model that writes the final answer.
        prompt: For every layer after the first and for the aggregator:
            text put before the numbered references in the system message
            (the paper's aggregate-and-synthesize prompt by default), or a
            callable or Runnable taking a ``PromptInput`` and returning the
            messages to send.
        min_proposers: How many proposers of each layer must succeed.
        strategy: ``"synthesize"`` (MoA), ``"rank"`` (the paper's LLM-ranker
            baseline: the aggregator picks one of the last layer's responses
            by number, with ``RANK_PROMPT`` unless ``prompt`` is given, and
            that response is the answer), another strategy's name, or a
            ``Strategy`` (see ``langchain_moa.stacks.strategy``).
        name: The compiled graph's name.
        **compile_options: Passed to ``StateGraph.compile``: ``checkpointer``
            (``False`` keeps a parent graph's away), ``store``,
            ``interrupt_before``, ``interrupt_after``, ``debug``, ``cache``.

    Returns:
        The compiled graph: input ``MoAInput`` (``messages``, and ``tools``
        and ``tool_choice`` when bound), output ``MoAOutput`` (``messages``
        with the answer, ``answer`` and ``calls``; see ``get_calls``).

    Raises:
        StackError: The stack is invalid; the message names what is wrong.
    """
    spec = StackSpec(
        proposer_layers=layers,
        aggregator=aggregator,
        prompt=prompt,
        min_proposers=min_proposers,
        strategy=strategy,
    )
    return compile_moa_graph(build_stack(spec), name=name, **compile_options)


def compile_moa_graph(
    stack: Stack, *, name: str = "moa", **compile_options: Any
) -> CompiledStateGraph:
    """Wire a stack whose models are built (``build_stack``) into the compiled graph.

    ``build_moa_graph`` checks and builds the stack first; ``ChatMoA`` calls
    this with the stack it built. The prompt, ``min_proposers``, the strategy,
    the reference order and early stop are ``stack.spec``'s.
    """
    spec = stack.spec
    rates, throttles = spec.rates(), Throttles(spec.provider_limits or {})
    throttles.check(
        [*(m for layer in stack.layers for m in layer), stack.aggregator, *stack.fallbacks]
    )
    common: dict[str, Any] = {
        "max_input_tokens": spec.max_input_tokens,
        "reference_format": spec.reference_format,
        "rates": rates,
        "throttles": throttles,
    }
    builder = StateGraph(MoAState, input_schema=MoAInput, output_schema=MoAOutput)
    shuffle = spec.reference_order == "shuffle"
    builder.add_node(BEGIN_NODE, _node(Begin(shuffle), None, BEGIN_NODE))
    builder.add_edge(START, BEGIN_NODE)
    names = [_node_names(number, models) for number, models in enumerate(stack.layers, start=1)]
    reviewed = isinstance(spec.strategy, RankThenSynthesize)
    # Where the proposer layers lead: the review, or the aggregator.
    after = _review_names(names[-1]) if reviewed else [AGGREGATOR_NODE]
    # Staircase streams its last proposer layer inside the aggregator: no nodes of its own.
    staircase = isinstance(spec.strategy, Staircase)
    wired = len(stack.layers) - staircase
    onward = [*names[1:wired], [AGGREGATOR_NODE]]
    _branch(
        builder, BEGIN_NODE, "reused", names[0] if wired else [AGGREGATOR_NODE], [AGGREGATOR_NODE]
    )
    check = _agreement(spec)
    references_prompt = spec.prompt or AGGREGATE_AND_SYNTHESIZE_PROMPT
    streamed: dict[str, Any] = {}
    for number, models in enumerate(stack.layers, start=1):
        join = f"layer{number}/join"
        policy, clocks = spec.policy(number), LayerClocks()
        proposers = [
            Proposer(
                number, index, node_name, model, references_prompt, policy, clocks=clocks, **common
            )
            for index, (node_name, model) in enumerate(zip(names[number - 1], models, strict=True))
        ]
        last = number == len(stack.layers)
        joined = Join(
            number,
            policy.min_proposers,
            spec.reference_filter,
            shuffle=shuffle,
            agreement=None if last else check,
            later_calls=sum(len(layer) for layer in stack.layers[number:]),
        )
        if number > wired:
            streamed = {"proposers": tuple(proposers), "join": joined}
            break
        for proposer in proposers:
            builder.add_node(proposer.name, _node(proposer, proposer.acall, proposer.name))
        builder.add_node(join, _node(joined, joined.acall, join))
        builder.add_edge(names[number - 1], join)
        if last:
            _fan(builder, join, after)
        elif check is None:
            _fan(builder, join, onward[number - 1])
        else:
            _branch(builder, join, "stopped", onward[number - 1], after)
    final_layer = len(stack.layers) + 1
    if reviewed:
        _add_review(builder, stack, names, spec, common)
        final_layer += 1
    final = _final_node(
        spec.strategy,
        layer=final_layer,
        index=0,
        name=AGGREGATOR_NODE,
        model=stack.aggregator,
        prompt=spec.prompt
        or (RANK_PROMPT if isinstance(spec.strategy, Rank) else AGGREGATE_AND_SYNTHESIZE_PROMPT),
        policy=spec.aggregator_policy(),
        fallbacks=tuple(stack.fallbacks),
        best_proposer_fallback=spec.best_proposer_fallback,
        **streamed,
        **common,
    )
    noted = _node(noting_edits(final), anoting_edits(final.acall), AGGREGATOR_NODE)
    builder.add_node(AGGREGATOR_NODE, noted)
    builder.add_edge(AGGREGATOR_NODE, END)
    stops = compile_options.get("interrupt_before") or ()
    if staircase and (stops == "*" or AGGREGATOR_NODE in stops):
        msg = (
            "interrupt_before: the staircase strategy runs its last proposer layer inside "
            "the aggregator node, so a stop before it comes before that layer's references "
            "exist; review references with another strategy"
        )
        raise StackError(msg)
    return builder.compile(name=name, **compile_options)


def _fan(builder: StateGraph, source: str, targets: Sequence[str]) -> None:
    for target in targets:
        builder.add_edge(source, target)


def _branch(
    builder: StateGraph, source: str, key: str, onward: list[str], shortcut: list[str]
) -> None:
    """``source`` goes to ``shortcut`` when the state's ``key`` is set, else ``onward``."""
    if onward == shortcut:
        _fan(builder, source, onward)
        return

    def route(state: MoAState) -> list[str]:
        return shortcut if state.get(key) else onward

    builder.add_conditional_edges(
        source, _node(route, None, f"{source}/route"), [*onward, *shortcut]
    )


def _agreement(spec: StackSpec) -> agreement.Agreement | None:
    """Early stop's test of a layer's answers, or None without early stop."""
    if spec.early_stop is None:
        return None
    # Not model_dump: it would turn a pydantic Embeddings (OpenAIEmbeddings...) into a dict.
    options = {k: v for k, v in spec.early_stop if k != "method" and v is not None}
    try:
        return agreement.from_options(spec.early_stop.method, **options)
    except agreement.MissingAgreementExtraError as error:
        msg = f"early_stop: {error}"
        raise StackError(msg) from None


def _review_names(last_layer: Sequence[str]) -> list[str]:
    """``review/<model>`` for each ``layerN/<model>`` of the last layer."""
    return [f"review/{name.split('/', 1)[1]}" for name in last_layer]


def _add_review(
    builder: StateGraph,
    stack: Stack,
    names: list[list[str]],
    spec: StackSpec,
    common: dict[str, Any],
) -> None:
    """Rank-then-synthesize's review layer: a reviewer per model of the last layer."""
    layer = len(stack.layers) + 1
    reviewers = _review_names(names[-1])
    policy, clocks = spec.policy(len(stack.layers)), LayerClocks()
    for index, (node_name, model) in enumerate(zip(reviewers, stack.layers[-1], strict=True)):
        own = _own_nodes(model, index, stack.layers, names)
        reviewer = Reviewer(
            layer, index, node_name, model, "", policy, clocks=clocks, own=own, **common
        )
        builder.add_node(node_name, _node(reviewer, reviewer.acall, node_name))
    join = "review/join"
    builder.add_node(join, _node(ReviewJoin(layer), None, join))
    builder.add_edge(reviewers, join)
    builder.add_edge(join, AGGREGATOR_NODE)


def _own_nodes(
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


def _final_node(strategy: Strategy, **parts: Any) -> Final:
    """The node that writes the answer, as the strategy has it."""
    if type(strategy).final_node is not Strategy.final_node:
        return strategy.final_node(**parts)
    if isinstance(strategy, Staircase):
        return StaircaseAggregator(
            **parts, step_tokens=strategy.step_tokens, max_partial_steps=strategy.max_partial_steps
        )
    if isinstance(strategy, SelfMoASeq):
        return SequentialAggregator(**parts, window=strategy.window)
    if isinstance(strategy, RankThenSynthesize):
        return RankedAggregator(**parts)
    if isinstance(strategy, Rank):
        return Ranker(**parts)
    return Aggregator(**parts)
