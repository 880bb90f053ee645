"""The Mixture-of-Agents graph: a node per proposer, a join per layer, an aggregator."""

from langchain_moa.graph.builder import build_moa_graph, compile_moa_graph, node_slug
from langchain_moa.graph.errors import AggregatorFailedError, LayerFailedError
from langchain_moa.graph.prompts import (
    AGGREGATE_AND_SYNTHESIZE_PROMPT,
    RANK_PROMPT,
    Prompt,
    PromptInput,
)
from langchain_moa.graph.rank import parse_choice
from langchain_moa.graph.state import (
    AGGREGATOR_NODE,
    ANSWER_CHUNK,
    CALL_END,
    CALL_ERROR,
    CALL_START,
    MoAInput,
    MoAOutput,
    MoAState,
    get_accounting,
    get_calls,
    is_answer_node,
)

__all__ = [
    "AGGREGATE_AND_SYNTHESIZE_PROMPT",
    "AGGREGATOR_NODE",
    "ANSWER_CHUNK",
    "CALL_END",
    "CALL_ERROR",
    "CALL_START",
    "RANK_PROMPT",
    "AggregatorFailedError",
    "LayerFailedError",
    "MoAInput",
    "MoAOutput",
    "MoAState",
    "Prompt",
    "PromptInput",
    "build_moa_graph",
    "compile_moa_graph",
    "get_accounting",
    "get_calls",
    "is_answer_node",
    "node_slug",
    "parse_choice",
]
