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
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from langchain_moa.graph import agreement
from langchain_moa.graph.human_review import anoting_edits, noting_edits
from langchain_moa.graph.join import Begin, Join
from langchain_moa.graph.limits import LayerClocks
from langchain_moa.graph.plan import Wiring
from langchain_moa.graph.prompts import AGGREGATE_AND_SYNTHESIZE_PROMPT, Prompt
from langchain_moa.graph.proposer import Proposer
from langchain_moa.graph.runnable import as_node
from langchain_moa.graph.state import AGGREGATOR_NODE, BEGIN_NODE, MoAInput, MoAOutput, MoAState
from langchain_moa.graph.strategies import plan_for
from langchain_moa.graph.throttle import Throttles
from langchain_moa.stacks import (
    Stack,
    StackError,
    StackSpec,
    Strategy,
    build_stack,
    model_label,
)


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
        when bound), output ``MoAOutput`` (``messages`` with the answer,
        ``answer`` and ``calls``; see ``get_calls``). The aggregator's call
        options (``stop``, ``tool_choice``...) go in the config's
        ``configurable["moa_aggregator_kwargs"]``.

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
    builder.add_node(BEGIN_NODE, as_node(Begin(shuffle), None, BEGIN_NODE))
    builder.add_edge(START, BEGIN_NODE)
    names = [_node_names(number, models) for number, models in enumerate(stack.layers, start=1)]
    plan = plan_for(spec.strategy)
    # Where the proposer layers lead: the strategy's own nodes, or the aggregator.
    wiring = Wiring(builder=builder, stack=stack, names=names, common=common)
    after = plan.between(wiring) if plan.between else [AGGREGATOR_NODE]
    wired = len(stack.layers) - plan.inner_layers
    onward = [*names[1:wired], [AGGREGATOR_NODE]]
    _branch(
        builder, BEGIN_NODE, "reused", names[0] if wired else [AGGREGATOR_NODE], [AGGREGATOR_NODE]
    )
    check = _agreement(spec)
    references_prompt = spec.prompt or AGGREGATE_AND_SYNTHESIZE_PROMPT
    inner: dict[str, Any] = {}
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
            inner = {"proposers": tuple(proposers), "join": joined}
            break
        for proposer in proposers:
            builder.add_node(proposer.name, as_node(proposer, proposer.acall, proposer.name))
        builder.add_node(join, as_node(joined, joined.acall, join))
        builder.add_edge(names[number - 1], join)
        if last:
            _fan(builder, join, after)
        elif check is None:
            _fan(builder, join, onward[number - 1])
        else:
            _branch(builder, join, "stopped", onward[number - 1], after)
    final = plan.final(
        layer=len(stack.layers) + 1 + (plan.between is not None),
        index=0,
        name=AGGREGATOR_NODE,
        model=stack.aggregator,
        prompt=spec.prompt or plan.prompt,
        policy=spec.aggregator_policy(),
        fallbacks=tuple(stack.fallbacks),
        best_proposer_fallback=spec.best_proposer_fallback,
        **inner,
        **common,
    )
    noted = as_node(noting_edits(final), anoting_edits(final.acall), AGGREGATOR_NODE)
    builder.add_node(AGGREGATOR_NODE, noted)
    builder.add_edge(AGGREGATOR_NODE, END)
    stops = compile_options.get("interrupt_before") or ()
    if plan.no_stop_before_final and (stops == "*" or AGGREGATOR_NODE in stops):
        msg = f"interrupt_before: {plan.no_stop_before_final}"
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
        source, as_node(route, None, f"{source}/route"), [*onward, *shortcut]
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
