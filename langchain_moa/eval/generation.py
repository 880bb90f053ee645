"""Asking a model under evaluation, and what its answers cost."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from langchain_moa.stacks import model_label

Prices = Mapping[str, tuple[float, float]]
"""Model name -> (US$ per million input tokens, US$ per million output tokens)."""


async def generate(
    model: BaseChatModel, messages: Sequence[BaseMessage], **kwargs: Any
) -> dict[str, Any]:
    """One answer with its usage, latency and, for MoA, every layer's calls.

    Returns:
        ``output`` (text), ``model``, ``usage`` (or None), ``latency_s``, and
        ``layers`` (MoA's per-call records; empty for a single model).
    """
    started = time.perf_counter()
    message = await model.ainvoke(list(messages), **kwargs)
    return {
        "output": message.text,
        "model": model_label(model),
        "usage": getattr(message, "usage_metadata", None),
        # MoA reports its own latency, which survives a cache hit.
        "latency_s": message.response_metadata.get("latency_s", time.perf_counter() - started),
        "layers": message.response_metadata.get("layers", []),
    }


def _calls(record: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any] | None]]:
    if record.get("layers"):
        for layer in record["layers"]:
            for call in layer:
                yield call["model"], call["usage"]
    else:
        yield record["model"], record.get("usage")


def usage_by_model(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Calls and tokens per model over generation records (MoA calls counted one by one)."""
    totals: dict[str, dict[str, int]] = {}
    for record in records:
        for model, usage in _calls(record):
            entry = totals.setdefault(
                model, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "calls_without_usage": 0}
            )
            entry["calls"] += 1
            if usage is None:
                entry["calls_without_usage"] += 1
            else:
                entry["input_tokens"] += usage["input_tokens"]
                entry["output_tokens"] += usage["output_tokens"]
    return totals


def cost_usd(usage: Mapping[str, Mapping[str, int]], prices: Prices) -> float | None:
    """The API cost of ``usage_by_model``'s totals; None if a model has no price."""
    total = 0.0
    for model, tokens in usage.items():
        if model not in prices:
            return None
        per_input, per_output = prices[model]
        total += (tokens["input_tokens"] * per_input + tokens["output_tokens"] * per_output) / 1e6
    return total


def summarize_generations(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What generating cost: per-model usage, calls and mean latency per item."""
    latencies = [r["latency_s"] for r in records]
    return {
        "items": len(records),
        "usage": usage_by_model(records),
        "latency_s_mean": sum(latencies) / len(latencies) if latencies else None,
        "output_chars_mean": (
            sum(len(r["output"]) for r in records) / len(records) if records else None
        ),
    }
