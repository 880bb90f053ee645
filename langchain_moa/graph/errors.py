"""The errors a MoA run raises when it cannot answer."""

from __future__ import annotations


class LayerFailedError(RuntimeError):
    """Too few proposers of a layer succeeded to go on."""


class AggregatorFailedError(RuntimeError):
    """The aggregator and every fallback failed; the message names each failure."""
