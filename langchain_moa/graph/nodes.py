"""The graph's nodes, from the modules that hold them.

``calls`` (what every model node shares), ``proposer``, ``final`` (the aggregator and
its fallbacks), ``join`` (the first check and each layer's join), ``errors``, and
``rank`` (the ranker, with its strategy); importing them from here keeps working.
"""

from langchain_moa.graph.calls import ModelNode, Start, stream_whole
from langchain_moa.graph.errors import AggregatorFailedError, LayerFailedError
from langchain_moa.graph.final import Aggregator, Attempt, Final, most_agreed
from langchain_moa.graph.join import Begin, Join, begin
from langchain_moa.graph.proposer import Proposer
from langchain_moa.graph.rank import Ranker, parse_choice

__all__ = [
    "Aggregator",
    "AggregatorFailedError",
    "Attempt",
    "Begin",
    "Final",
    "Join",
    "LayerFailedError",
    "ModelNode",
    "Proposer",
    "Ranker",
    "Start",
    "begin",
    "most_agreed",
    "parse_choice",
    "stream_whole",
]
