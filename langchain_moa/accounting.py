"""Per-call records and what they add up to: tokens, calls, failures, latency, cost, TFLOPs."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Literal, NotRequired

from langchain_core.messages.ai import UsageMetadata, add_usage
from typing_extensions import TypedDict  # pydantic (Studio schemas) needs it on 3.11

from langchain_moa.costs import known_sum, layer_tflops

FailureReason = Literal[
    "timeout",
    "rate_limit",
    "server_error",
    "bad_response",
    "context_overflow",
    "cancelled",
    "other",
]
"""Why a call failed: the kinds a user acts on differently."""


class ReferenceEdit(TypedDict):
    """A reference someone changed while the run waited before its aggregator."""

    node: str
    """The proposer node whose answer it was (or the name it was added under)."""
    edit: Literal["edited", "dropped", "added"]
    """Its text replaced; left out; or not a proposer's answer of this run at all."""


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
    ttft_s: float | None
    """Seconds to its first streamed token; None when the call was not streamed."""
    cost_usd: float | None
    """US$ at the stack's prices (``costs``); None when its price or usage is unknown."""
    tflops: float | None
    """The paper's proxy, 2 x active parameters x tokens; None when either is unknown."""
    error: str | None
    """``ExceptionType: message`` when the call failed, else None."""
    reason: FailureReason | None
    """The kind of failure (see ``failure_reason``), None when the call succeeded."""
    note: str | None
    """What was done to the call's input (references shortened, images left
    out) or how it came to write the answer (the last resort), else None."""
    references: NotRequired[list[str] | None]
    """The nodes whose answers it read, in the order shown (``reference_order=
    "shuffle"`` draws it per query); None for a call that read none."""
    edited_references: NotRequired[list[ReferenceEdit]]
    """The aggregator's only, when references were changed before it read them
    (``langchain_moa.graph.human_review``)."""


class LayerSummary(TypedDict):
    """What one layer cost."""

    layer: int
    calls: int
    failures: int
    reasons: dict[str, int]
    """Failures by reason (``FailureReason``), most frequent first."""
    usage: UsageMetadata | None
    latency_s: float
    """Wall time of the layer, first start to last end: its calls run concurrently."""
    critical_path_s: float
    """Its slowest call's latency (the aggregator's layer: its attempts' sum): what the
    layer adds to the answer's wait at best."""
    cost_usd: float | None
    """The sum of its calls' costs; None when one is unknown (``costs.known_sum``)."""
    tflops: float | None
    """Its largest call's TFLOPs (the paper's proxy: a layer's calls run side by side;
    the aggregator's attempts, one after another, add up)."""


class Totals(TypedDict):
    """What the whole answer cost: every layer added up."""

    calls: int
    failures: int
    usage: UsageMetadata | None
    cost_usd: float | None
    """The sum of every call's cost; None when one is unknown."""
    tflops: float | None
    """The sum of the layers' TFLOPs (the paper's TFLOPs per query)."""
    critical_path_s: float
    """The sum of the layers' critical paths: the least time the stack could take."""
    latency_s: float
    """End to end, as the caller waited."""
    ttft_s: float | None
    """Seconds to the streamed answer's first token; None when not streamed."""


class Accounting(TypedDict):
    """Per-layer and total accounting of one answer (``response_metadata["accounting"]``)."""

    layers: list[LayerSummary]
    """Layer by layer, the aggregator's last."""
    total: Totals


_SECRET = re.compile(
    # A credential ends at a quote or comma too: it may sit in a JSON body, which must stay JSON.
    r"(sk-[A-Za-z0-9_\-*]{6,}|(?i:bearer)\s+[^\s\"',]+|(?i:api[_-]?key)[\"']?\s*[:=]\s*[\"']?[^\s\"',]+)"
)


_SECRET_VARIABLE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(_|$)")
"""Environment variable names that hold a credential (``TOGETHER_API_KEY``, ``HF_TOKEN``,
``AWS_SECRET_ACCESS_KEY``...)."""
_SHORTEST_SECRET = 8
"""Shorter values (flags, ``true``) are not masked: they would mask ordinary words."""


_KNOWN_SECRETS: set[str] = set()
"""Keys the model factory read from the variables a stack's ``api_key_env`` names."""


def known_secret(value: str) -> str:
    """Remember ``value`` as a credential that ``redact`` masks wherever it appears; return it.

    The model factory calls it for every key it reads, whatever its variable is named.
    """
    if len(value) >= _SHORTEST_SECRET:
        _KNOWN_SECRETS.add(value)
    return value


def _secret_values() -> list[str]:
    """The credentials to mask: the known ones and the environment's, longest first."""
    values = {
        value
        for name, value in os.environ.items()
        if _SECRET_VARIABLE.search(name.upper()) and len(value) >= _SHORTEST_SECRET
    } | _KNOWN_SECRETS
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """Mask anything in an error message that looks like a credential.

    That is what has a key's shape (``sk-...``, ``Bearer ...``, ``api_key=...``),
    and the value of any environment variable whose name says it holds a
    credential: keys without a telling prefix (Together's, a gateway's) too,
    such as a server that echoes the key it was sent in its error.
    """
    for value in _secret_values():
        text = text.replace(value, "[redacted]")
    return _SECRET.sub("[redacted]", text)


def describe_error(error: BaseException) -> str:
    """``ExceptionType: message``, with credentials masked."""
    return redact(f"{type(error).__name__}: {error}")


class BadResponseError(ValueError):
    """A model answered, but with nothing usable (empty, or not what was asked)."""


class CallTimeoutError(TimeoutError):
    """A call ran past its ``timeout_s`` or its layer's deadline, and was cancelled."""


_CONTEXT_OVERFLOW = re.compile(
    r"context[_ ]length|context window|maximum context|too many tokens|exceeds the context"
    r"|prompt is too long|n_ctx",
    re.IGNORECASE,
)


def _status(error: BaseException) -> int | None:
    # openai's APIStatusError carries status_code; httpx's HTTPStatusError a response.
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _kinds(error: BaseException) -> set[str]:
    # By name: this module must not import every provider's SDK.
    return {cls.__name__ for cls in type(error).__mro__}


def failure_reason(error: BaseException) -> FailureReason:  # noqa: PLR0911 - a return per reason
    """The kind of a call's failure, from its exception.

    Provider SDKs are told apart by their exception classes' names and HTTP
    status, so that no SDK is imported here.
    """
    kinds, status = _kinds(error), _status(error)
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, TimeoutError) or kinds & {"APITimeoutError", "TimeoutException"}:
        return "timeout"
    if status == HTTPStatus.TOO_MANY_REQUESTS or "RateLimitError" in kinds:
        return "rate_limit"
    if _CONTEXT_OVERFLOW.search(str(error)) and status in {
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        None,
    }:
        return "context_overflow"
    if isinstance(error, BadResponseError | json.JSONDecodeError) or kinds & {
        "APIResponseValidationError",
        "RemoteProtocolError",
        "DecodingError",
        "OutputParserException",
    }:
        return "bad_response"
    if (status is not None and status >= HTTPStatus.INTERNAL_SERVER_ERROR) or kinds & {
        "InternalServerError",
        "APIConnectionError",
        "ConnectError",
    }:
        return "server_error"
    return "other"


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


MAY_HAVE_BEEN_SERVED: frozenset[str] = frozenset({"timeout", "cancelled", "bad_response"})
"""Failures after which the provider may have served, and billed, the request: we
stopped waiting, or it answered with something unusable. What they cost is unknown."""


def refused(call: Mapping[str, Any]) -> bool:
    """Whether a call failed before a provider served it: it spent nothing.

    That is a failure without usage for any reason but ``MAY_HAVE_BEEN_SERVED``
    (a rate limit, a server error, an overflowing context, a refused
    connection). Records written before ``reason`` existed count as refused.
    """
    return (
        call.get("error") is not None
        and call.get("usage") is None
        and call.get("reason") not in MAY_HAVE_BEEN_SERVED
    )


def summarize_layer(calls: Sequence[ModelCall], *, sequential: bool = False) -> LayerSummary:
    """Calls, failures, tokens, wall time, critical path, cost and TFLOPs of one layer.

    A refused call adds nothing to cost and TFLOPs; one that may have been
    served makes them unknown (None). With ``sequential`` (the aggregator and
    its fallbacks, tried one after another) the critical path and TFLOPs add
    up; otherwise a layer's calls run side by side and the largest counts.
    """
    start = min(c["started_at"] for c in calls)
    end = max(c["started_at"] + c["latency_s"] for c in calls)
    spent = [c for c in calls if not refused(c)]
    latencies = [c["latency_s"] for c in calls]
    tflops = [c["tflops"] for c in spent]
    return LayerSummary(
        layer=calls[0]["layer"],
        calls=len(calls),
        failures=sum(c["error"] is not None for c in calls),
        reasons=dict(Counter(c["reason"] or "other" for c in calls if c["error"]).most_common()),
        usage=total_usage(calls),
        latency_s=end - start,
        critical_path_s=sum(latencies) if sequential else max(latencies),
        cost_usd=known_sum(c["cost_usd"] for c in spent),
        tflops=layer_tflops(tflops, sequential=sequential),
    )


def account(
    calls: Sequence[ModelCall], *, latency_s: float, ttft_s: float | None = None
) -> Accounting:
    """Every layer's summary and the totals of one answer's calls.

    Args:
        calls: The answer's call records (``get_calls``).
        latency_s: The answer's end-to-end latency.
        ttft_s: Seconds to its first streamed token, when streamed.
    """
    grouped = by_layer(calls)
    # The last layer is the aggregator's: its fallbacks ran one after another.
    layers = [
        summarize_layer(layer, sequential=number == len(grouped))
        for number, layer in enumerate(grouped, start=1)
    ]
    usage = None
    for layer in layers:
        # Layer by layer: add_usage is generic (nested details) and not cheap.
        if layer["usage"] is not None:
            usage = add_usage(usage, layer["usage"])
    return Accounting(
        layers=layers,
        total=Totals(
            calls=len(calls),
            failures=sum(layer["failures"] for layer in layers),
            usage=usage,
            cost_usd=known_sum(layer["cost_usd"] for layer in layers),
            tflops=known_sum(layer["tflops"] for layer in layers),
            critical_path_s=sum(layer["critical_path_s"] for layer in layers),
            latency_s=latency_s,
            ttft_s=ttft_s,
        ),
    )


FALLBACK_NODES = ("fallback-", "best-proposer")
"""How the nodes of the aggregator's stand-ins end (``aggregator/fallback-1``...): an
answer one of them wrote is degraded, where a step of the aggregator's own is not."""


def degradations(calls: Sequence[ModelCall]) -> list[str]:
    """Why an answer is not what the whole stack would have written, one reason a line.

    A failed or late call, a fallback aggregator or the last resort, and
    input changed to fit a model (shortened references, dropped images).
    """
    layers = by_layer(calls)
    reasons = []
    for number, layer in enumerate(layers, start=1):
        last = number == len(layers)
        for call in layer:
            if call["error"] is not None:
                what = "failed" if call["text"] is None else "answered badly"
                reasons.append(f"{call['node']} {what} ({call['reason']})")
            elif last and call["node"].rsplit("/", 1)[-1].startswith(FALLBACK_NODES):
                reasons.append(f"{call['node']} wrote the answer: the aggregator before it failed")
            if call["note"] is not None:
                reasons.append(f"{call['node']}: {call['note']}")
    return reasons


def format_summary(calls: Sequence[ModelCall], total_latency_s: float) -> str:
    """One line for people: calls, tokens and latency per layer, then in total."""

    def tokens(usage: UsageMetadata | None) -> str:
        if usage is None:
            return "tokens n/a"
        return f"{usage['input_tokens']} in / {usage['output_tokens']} out tokens"

    def count(n: int, noun: str) -> str:
        return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

    accounting = account(calls, latency_s=total_latency_s)
    layers, total = accounting["layers"], accounting["total"]
    parts = []
    for number, summary in enumerate(layers, start=1):
        label = "aggregator" if number == len(layers) else f"layer {number}"
        reasons = ", ".join(f"{n} {reason}" for reason, n in summary["reasons"].items())
        failed = f" ({summary['failures']} failed: {reasons})" if summary["failures"] else ""
        parts.append(
            f"{label}: {count(summary['calls'], 'call')}{failed}, "
            f"{tokens(summary['usage'])}, {summary['latency_s']:.1f}s"
        )
    missing = sum(c["usage"] is None and c["error"] is None for c in calls)
    note = f" ({count(missing, 'call')} reported no usage)" if missing else ""
    cost = total["cost_usd"]
    parts.append(
        f"total: {count(total['calls'], 'call')}, {tokens(total['usage'])}{note}, "
        f"{'cost n/a' if cost is None else f'${cost:.4f}'}, {total['latency_s']:.1f}s"
    )
    return " | ".join(parts)
