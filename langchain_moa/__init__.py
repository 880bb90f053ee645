"""Mixture-of-Agents for LangChain and LangGraph."""

from langchain_moa.chat_models import ChatMoA
from langchain_moa.graph import LayerFailedError, build_moa_graph
from langchain_moa.local import LlamaServer
from langchain_moa.prompts import AGGREGATE_AND_SYNTHESIZE_PROMPT

__all__ = [
    "AGGREGATE_AND_SYNTHESIZE_PROMPT",
    "ChatMoA",
    "LayerFailedError",
    "LlamaServer",
    "build_moa_graph",
]
