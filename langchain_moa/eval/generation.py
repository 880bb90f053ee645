"""Asking a model under evaluation, and what its answers cost.

What a query costs follows the paper's budget analysis (`langchain_moa.costs`): its US$ is
the sum of its calls' list-price costs; its TFLOPs are, per layer, the largest call's
(a layer's calls run side by side), summed over layers; a single model's query is its
one call. Both are computed from each record's calls (``model`` and ``usage``), never
stored per record, so results written before these fields existed are costed the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.messages.ai import UsageMetadata

from langchain_moa.accounting import refused
from langchain_moa.costs import Rates, known_sum, layer_tflops
from langchain_moa.stacks import model_label


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


Call = tuple[str, UsageMetadata | None, bool]
"""One model call of a query: its model, its usage (None: none reported), and whether
it was refused (``accounting.refused``: it failed before a provider served it)."""


def as_usage(raw: Mapping[str, Any] | None) -> UsageMetadata | None:
    """Token counts as `UsageMetadata`, from plain ``input_tokens``/``output_tokens``.

    A record's usage read back from JSON, or a model's totals in a generation summary.
    """
    if raw is None:
        return None
    return UsageMetadata(
        input_tokens=int(raw["input_tokens"]),
        output_tokens=int(raw["output_tokens"]),
        total_tokens=int(raw["input_tokens"]) + int(raw["output_tokens"]),
    )


def calls_by_layer(record: Mapping[str, Any]) -> list[list[Call]]:
    """A generation record's calls, layer by layer; a single model's is one layer of one call.

    A refused call (``accounting.refused``) spent nothing; one that may have been
    served without reporting usage (it timed out on our side) costs an unknown amount.
    """
    if record.get("layers"):
        return [
            [
                (
                    call["model"],
                    as_usage(call["usage"]),
                    refused(call),
                )
                for call in layer
            ]
            for layer in record["layers"]
        ]
    return [[(record["model"], as_usage(record.get("usage")), False)]]


def _calls(record: Mapping[str, Any]) -> Iterable[Call]:
    for layer in calls_by_layer(record):
        yield from layer


def query_cost_usd(record: Mapping[str, Any], rates: Rates) -> float | None:
    """One query's US$: the sum of its calls' costs at ``rates``' prices.

    A refused call (``accounting.refused``) adds nothing; any other call without usage
    (one that may have been served), or a model without a price, makes the cost unknown.
    """
    return known_sum(
        rates.cost_usd(model, usage)
        for model, usage, spent_nothing in _calls(record)
        if not spent_nothing
    )


def query_tflops(record: Mapping[str, Any], rates: Rates) -> float | None:
    """One query's TFLOPs, the paper's latency proxy: per layer its largest call's, summed.

    Each call is ``2 x active parameters x tokens`` (`Rates.tflops`); the last layer's
    calls (the aggregator and its fallbacks) ran one after another and add up. A refused
    call adds nothing; any other call without usage, or a model of unknown size, gives None.
    """
    layers = calls_by_layer(record)
    return known_sum(
        layer_tflops(
            (
                rates.tflops(model, usage)
                for model, usage, spent_nothing in layer
                if not spent_nothing
            ),
            sequential=number == len(layers),
        )
        for number, layer in enumerate(layers, start=1)
    )


def usage_by_model(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Calls and tokens per model over generation records (MoA calls counted one by one).

    ``calls`` counts every call; of them, ``failed_calls`` were refused (nothing spent)
    and ``calls_without_usage`` may have been served without reporting usage (results
    written before ``failed_calls`` existed count refused calls there too).
    """
    totals: dict[str, dict[str, int]] = {}
    for record in records:
        for model, usage, spent_nothing in _calls(record):
            entry = totals.setdefault(
                model,
                {
                    "calls": 0,
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "failed_calls": 0,
                    "calls_without_usage": 0,
                },
            )
            entry["calls"] += 1
            if spent_nothing:
                entry["failed_calls"] += 1
            elif usage is None:
                entry["calls_without_usage"] += 1
            else:
                entry["input_tokens"] += usage["input_tokens"]
                entry["output_tokens"] += usage["output_tokens"]
    return totals


def total_cost_usd(usage: Mapping[str, Mapping[str, int]], rates: Rates) -> float | None:
    """The US$ of `usage_by_model`'s totals at ``rates``' prices.

    The sum over models of ``input_tokens x input price + output_tokens x output price``
    (per million tokens): the sum of `query_cost_usd` over the records, since cost is
    linear in tokens. None when a model has no price or a successful call reported no usage.
    """
    total = 0.0
    for model, tokens in usage.items():
        if tokens.get("calls_without_usage", 0):
            return None
        cost = rates.cost_usd(model, as_usage(tokens))
        if cost is None:
            return None
        total += cost
    return total


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean, or None when there are no values or any is unknown."""
    known = [v for v in values if v is not None]
    if not values or len(known) < len(values):
        return None
    return sum(known) / len(known)


def summarize_generations(records: Sequence[Mapping[str, Any]], rates: Rates) -> dict[str, Any]:
    """What generating cost: per-model usage, calls, latency, US$ and TFLOPs per item.

    ``cost_usd_per_query`` is the mean of `query_cost_usd` and ``tflops_per_query`` the
    mean of `query_tflops` (None when any item's is unknown); ``rates`` records the price
    and size each model was costed with, so a report can tell a stale TFLOPs figure.
    """
    latencies = [r["latency_s"] for r in records]
    usage = usage_by_model(records)
    return {
        "items": len(records),
        "usage": usage,
        "latency_s_mean": sum(latencies) / len(latencies) if latencies else None,
        "output_chars_mean": (
            sum(len(r["output"]) for r in records) / len(records) if records else None
        ),
        "cost_usd_per_query": _mean([query_cost_usd(r, rates) for r in records]),
        "tflops_per_query": _mean([query_tflops(r, rates) for r in records]),
        "rates": {
            model: {
                "usd_per_million_tokens": rates.price(model),
                "active_parameters_b": rates.active_parameters(model),
            }
            for model in usage
        },
    }
