"""Per-call records and what they add up to: tokens, calls, failures, latency."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from langchain_core.messages.ai import UsageMetadata, add_usage
from typing_extensions import TypedDict  # pydantic (Studio schemas) needs it on 3.11


class ModelCall(TypedDict):
    """One model call inside a MoA run: a proposer's or the aggregator's."""

    turn: int
    """Which run of the conversation made the call (its length at the time)."""
    layer: int
    """1-based layer; the aggregator's layer is the last one."""
    index: int
    """Position of the model in its layer, 0-based; fixes reference order."""
    node: str
    """Graph node that made the call, e.g. ``layer1/gpt-4o``."""
    model: str
    """The model's name as its chat model reports it."""
    text: str | None
    """The response text, or None when the call failed."""
    usage: UsageMetadata | None
    """Tokens used, or None when the provider reported none."""
    started_at: float
    """Wall-clock start, seconds since the epoch."""
    latency_s: float
    """Seconds the call took."""
    error: str | None
    """``ExceptionType: message`` when the call failed, else None."""


class LayerSummary(TypedDict):
    """What one layer cost."""

    layer: int
    calls: int
    failures: int
    usage: UsageMetadata | None
    latency_s: float
    """Wall time of the layer: its calls run concurrently."""


_SECRET = re.compile(
    r"(sk-[A-Za-z0-9_\-*]{6,}|(?i:bearer)\s+\S+|(?i:api[_-]?key)[\"']?\s*[:=]\s*[\"']?[^\s\"',]+)"
)


def redact(text: str) -> str:
    """Mask anything in an error message that looks like a credential."""
    return _SECRET.sub("[redacted]", text)


def describe_error(error: BaseException) -> str:
    """``ExceptionType: message``, with credentials masked."""
    return redact(f"{type(error).__name__}: {error}")


def total_usage(calls: Iterable[ModelCall]) -> UsageMetadata | None:
    """Sum the usage of every call that reported some; None if none did."""
    total: UsageMetadata | None = None
    for call in calls:
        if call["usage"] is not None:
            total = add_usage(total, call["usage"])
    return total


def by_layer(calls: Iterable[ModelCall]) -> list[list[ModelCall]]:
    """Group calls by layer, each layer in proposer order."""
    layers: dict[int, list[ModelCall]] = {}
    for call in calls:
        layers.setdefault(call["layer"], []).append(call)
    return [sorted(layers[n], key=lambda c: c["index"]) for n in sorted(layers)]


def summarize_layer(calls: Sequence[ModelCall]) -> LayerSummary:
    """Calls, failures, tokens and wall time of one layer's calls."""
    start = min(c["started_at"] for c in calls)
    end = max(c["started_at"] + c["latency_s"] for c in calls)
    return LayerSummary(
        layer=calls[0]["layer"],
        calls=len(calls),
        failures=sum(c["error"] is not None for c in calls),
        usage=total_usage(calls),
        latency_s=end - start,
    )


def format_summary(calls: Sequence[ModelCall], total_latency_s: float) -> str:
    """One line for people: calls, tokens and latency per layer, then in total."""

    def tokens(usage: UsageMetadata | None) -> str:
        if usage is None:
            return "tokens n/a"
        return f"{usage['input_tokens']} in / {usage['output_tokens']} out tokens"

    def count(n: int, noun: str) -> str:
        return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

    layers = by_layer(calls)
    parts = []
    for number, layer in enumerate(layers, start=1):
        summary = summarize_layer(layer)
        label = "aggregator" if number == len(layers) else f"layer {number}"
        failed = f" ({summary['failures']} failed)" if summary["failures"] else ""
        parts.append(
            f"{label}: {count(summary['calls'], 'call')}{failed}, "
            f"{tokens(summary['usage'])}, {summary['latency_s']:.1f}s"
        )
    missing = sum(c["usage"] is None and c["error"] is None for c in calls)
    note = f" ({count(missing, 'call')} reported no usage)" if missing else ""
    parts.append(
        f"total: {count(len(calls), 'call')}, {tokens(total_usage(calls))}{note}, "
        f"{total_latency_s:.1f}s"
    )
    return " | ".join(parts)
