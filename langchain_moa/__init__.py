"""Mixture-of-Agents for LangChain and LangGraph.

Importing the package loads neither llama.cpp nor the evaluation libraries
and starts nothing.
"""

from langchain_moa.chat_models import ChatMoA
from langchain_moa.graph import (
    AGGREGATE_AND_SYNTHESIZE_PROMPT,
    AggregatorFailedError,
    LayerFailedError,
    build_moa_graph,
    get_accounting,
    get_calls,
)
from langchain_moa.local import LlamaServer
from langchain_moa.stacks import ModelConfig, StackError, StackSpec

__all__ = [
    "AGGREGATE_AND_SYNTHESIZE_PROMPT",
    "AggregatorFailedError",
    "ChatMoA",
    "LayerFailedError",
    "LlamaServer",
    "ModelConfig",
    "StackError",
    "StackSpec",
    "build_moa_graph",
    "get_accounting",
    "get_calls",
]
