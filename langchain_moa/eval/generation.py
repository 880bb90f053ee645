"""Asking a model under evaluation, and keeping what its answer cost."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage


async def generate(
    model: BaseChatModel, messages: Sequence[BaseMessage], **kwargs: Any
) -> dict[str, Any]:
    """One answer with its usage, latency and, for MoA, every layer's calls.

    Returns:
        ``output`` (text), ``usage`` (or None), ``latency_s``, ``layers`` (MoA's
        per-call records, empty for a single model).
    """
    started = time.perf_counter()
    message = await model.ainvoke(list(messages), **kwargs)
    return {
        "output": message.text,
        "usage": getattr(message, "usage_metadata", None),
        # MoA reports its own latency, which survives a cache hit.
        "latency_s": message.response_metadata.get("latency_s", time.perf_counter() - started),
        "layers": message.response_metadata.get("layers", []),
    }
