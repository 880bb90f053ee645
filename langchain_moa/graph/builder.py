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

from langchain_moa.graph.limits import LayerClocks
from langchain_moa.graph.nodes import Aggregator, Join, Proposer, Ranker, begin
from langchain_moa.graph.prompts import AGGREGATE_AND_SYNTHESIZE_PROMPT, RANK_PROMPT, Prompt
from langchain_moa.graph.state import AGGREGATOR_NODE, BEGIN_NODE, MoAInput, MoAOutput, MoAState
from langchain_moa.graph.throttle import Throttles
from langchain_moa.stacks import Aggregation, Stack, StackSpec, build_stack, model_label

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
    aggregation: Aggregation = "synthesize",
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
        aggregation: ``"synthesize"`` (MoA) or ``"rank"`` (the paper's
            LLM-ranker baseline: the aggregator picks one of the last layer's
            responses by number, with ``RANK_PROMPT`` unless ``prompt`` is
            given, and that response is the answer).
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
        aggregation=aggregation,
    )
    return compile_moa_graph(build_stack(spec), name=name, **compile_options)


def compile_moa_graph(
    stack: Stack, *, name: str = "moa", **compile_options: Any
) -> CompiledStateGraph:
    """Wire a stack whose models are built (``build_stack``) into the compiled graph.

    ``build_moa_graph`` checks and builds the stack first; ``ChatMoA`` calls
    this with the stack it built. The prompt, ``min_proposers`` and the
    aggregation are ``stack.spec``'s.
    """
    spec = stack.spec
    rates, throttles = spec.rates(), Throttles(spec.provider_limits or {})
    throttles.check(
        [*(m for layer in stack.layers for m in layer), stack.aggregator, *stack.fallbacks]
    )
    builder = StateGraph(MoAState, input_schema=MoAInput, output_schema=MoAOutput)
    builder.add_node(BEGIN_NODE, _node(begin, None, BEGIN_NODE))
    builder.add_edge(START, BEGIN_NODE)
    first_layer = _node_names(1, stack.layers[0])

    def route(state: MoAState) -> str | list[str]:
        # A run that reuses the turn's references goes straight to the aggregator.
        return AGGREGATOR_NODE if state.get("reused") else first_layer

    builder.add_conditional_edges(
        BEGIN_NODE, _node(route, None, "route"), [*first_layer, AGGREGATOR_NODE]
    )
    previous: str | None = None  # layer 1 starts from begin's conditional edge
    references_prompt = spec.prompt or AGGREGATE_AND_SYNTHESIZE_PROMPT
    for number, models in enumerate(stack.layers, start=1):
        names = _node_names(number, models)
        join = f"layer{number}/join"
        policy, clocks = spec.policy(number), LayerClocks()
        for index, (node_name, model) in enumerate(zip(names, models, strict=True)):
            proposer = Proposer(
                number,
                index,
                node_name,
                model,
                references_prompt,
                policy,
                clocks=clocks,
                max_input_tokens=spec.max_input_tokens,
                reference_format=spec.reference_format,
                rates=rates,
                throttles=throttles,
            )
            builder.add_node(node_name, _node(proposer, proposer.acall, node_name))
            if previous is not None:
                builder.add_edge(previous, node_name)
        joined = Join(number, policy.min_proposers, spec.reference_filter)
        builder.add_node(join, _node(joined, None, join))
        builder.add_edge(names, join)
        previous = join
    final_class = Ranker if spec.aggregation == "rank" else Aggregator
    final_prompt = spec.prompt or (
        RANK_PROMPT if spec.aggregation == "rank" else AGGREGATE_AND_SYNTHESIZE_PROMPT
    )
    final = final_class(
        len(stack.layers) + 1,
        0,
        AGGREGATOR_NODE,
        stack.aggregator,
        final_prompt,
        spec.aggregator_policy(),
        fallbacks=tuple(stack.fallbacks),
        best_proposer_fallback=spec.best_proposer_fallback,
        max_input_tokens=spec.max_input_tokens,
        reference_format=spec.reference_format,
        rates=rates,
        throttles=throttles,
    )
    builder.add_node(AGGREGATOR_NODE, _node(final, final.acall, AGGREGATOR_NODE))
    builder.add_edge(f"layer{len(stack.layers)}/join", AGGREGATOR_NODE)
    builder.add_edge(AGGREGATOR_NODE, END)
    return builder.compile(name=name, **compile_options)
