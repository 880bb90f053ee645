"""Fault injection: what a MoA stack answers when its models misbehave.

Each scenario builds a ``ChatMoA`` of 2 layers (3 proposers and an
aggregator) whose models are real ``ChatOpenAI`` clients of a local
``FaultServer``; the model names choose the faults. It asks N questions
concurrently and sorts each outcome:

- answered: an answer, not marked degraded;
- degraded: an answer marked ``response_metadata["degraded"]`` (its reasons
  tallied); an answer whose call records show a failure but which is not
  marked counts here too, and makes its row not ok;
- failed, clear error: an exception of langchain_moa's own that names the problem;
- unclear: any other exception, an answer with no content, or two replies spliced
  into one answer (a streamed answer that another model took over mid-way);
- hung: no outcome after ``--hang-after`` seconds (must be 0);
- lost: asked, but no outcome at all (must be 0), e.g. a ``CancelledError``
  escaping ``ainvoke``.

It prints a markdown table, each row's reasons and first error, and the
deadline comparison: a stack with one proposer stalled and ``deadline_s``
set against the same stack without that proposer (p95 of each, the ratio).

Usage::

    .venv/bin/python benchmarks/faults.py [--queries 100] [--concurrency 16] [--out FILE.md]
        [--json FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

if __package__ in {None, ""}:
    # Run as a script (python benchmarks/faults.py): the repository root is
    # what makes ``benchmarks`` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.messages import AIMessage, BaseMessage

from benchmarks.fault_server import REPLY_PREFIX, FaultServer
from langchain_moa import ChatMoA
from langchain_moa.bench.provenance import provenance

Expected = Literal["answered", "degraded", "failed"]
Kind = Literal["answered", "degraded", "failed", "unclear", "hung", "lost"]

REFUSED = "refused"
"""A model name (tagged) that points at the refused address: down for good."""

TIMEOUT_S = 2.5
"""``timeout_s`` of every stack: one call, retries included (wall clock)."""
MAX_RETRIES = 1
"""``max_retries`` of every client: one retry, with the SDK's backoff or Retry-After."""
DEADLINE_S = 0.3
"""``deadline_s`` of the deadline rows: the healthy latency's upper bound."""
QUORUM_DEADLINE_S = 0.05
"""``deadline_s`` counted from the quorum's answer (``deadline_after="quorum"``)."""
DEADLINE_GROUP = "deadline"
DEADLINE_CONCURRENCY = 4
"""Questions at a time in the deadline comparison. Client and server share one
process (one GIL) here: at 16 at a time on 2 shared CPUs the process is CPU-bound,
and p95 measures queueing for the CPU (a few questions in a hundred wait 0.7 s
more, whichever the stack) rather than what the deadline costs."""

HEALTHY = ("ok.p1", "ok.p2", "ok.p3")

NO_REASON = "(degraded, no reason given)"
NOT_MARKED = "(a call failed, the answer is not marked degraded)"


@dataclass(frozen=True)
class Scenario:
    """One row: the stack's models (fault-server names) and what must come of it."""

    name: str
    proposers: tuple[str, ...]
    aggregator: str
    expect: Expected
    settings: Mapping[str, Any] = field(default_factory=dict)
    """More ``ChatMoA`` fields (``deadline_s``, ``best_proposer_fallback``...)."""
    fallbacks: tuple[str, ...] = ()
    stream: bool = False
    """Ask with ``astream`` (the aggregator streams) instead of ``ainvoke``."""
    names: str = ""
    """A failure's message must contain this (what it must name)."""
    group: str = ""
    """Scenarios of one group (consecutive) are run together, question by question."""
    reason: str = ""
    """The reason a degraded answer's failed call must be recorded with."""


def _one_bad(fault: str) -> tuple[str, ...]:
    return ("ok.p1", "ok.p2", f"{fault}.p3")


STALLED_DEADLINE = "stall, one proposer, deadline_s"
STALLED_QUORUM = "stall, one proposer, deadline_s after quorum"
WITHOUT_STALLED = "without the stalled proposer (deadline rows' baseline)"
_DEADLINE = {"deadline_s": DEADLINE_S, "min_proposers": 2}
_QUORUM = {"deadline_s": QUORUM_DEADLINE_S, "deadline_after": "quorum", "min_proposers": 2}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("healthy", HEALTHY, "ok.agg", "answered"),
    Scenario(
        "HTTP 500, every call's first attempt",
        tuple(f"http-500-once.p{i}" for i in (1, 2, 3)),
        "http-500-once.agg",
        "answered",
    ),
    Scenario(
        "HTTP 500, one proposer, always",
        _one_bad("http-500"),
        "ok.agg",
        "degraded",
        reason="server_error",
    ),
    Scenario(
        "429 + Retry-After, every call's first attempt",
        tuple(f"http-429-once.p{i}" for i in (1, 2, 3)),
        "http-429-once.agg",
        "answered",
    ),
    Scenario(
        "429 + Retry-After, one proposer, always",
        _one_bad("http-429"),
        "ok.agg",
        "degraded",
        reason="rate_limit",
    ),
    Scenario(
        "stall, one proposer (timeout_s)", _one_bad("stall"), "ok.agg", "degraded", reason="timeout"
    ),
    Scenario(
        STALLED_DEADLINE,
        _one_bad("stall"),
        "ok.agg",
        "degraded",
        _DEADLINE,
        group=DEADLINE_GROUP,
        reason="timeout",
    ),
    Scenario(
        STALLED_QUORUM,
        _one_bad("stall"),
        "ok.agg",
        "degraded",
        _QUORUM,
        group=DEADLINE_GROUP,
        reason="timeout",
    ),
    Scenario(
        WITHOUT_STALLED, ("ok.p1", "ok.p2"), "ok.agg", "answered", _DEADLINE, group=DEADLINE_GROUP
    ),
    Scenario("cut stream, one proposer", _one_bad("cut-stream"), "ok.agg", "degraded"),
    Scenario(
        "cut stream, aggregator (streamed answer), with fallbacks",
        HEALTHY,
        "cut-stream.agg",
        "failed",
        fallbacks=("ok.fallback",),
        stream=True,
        names="aggregator",
    ),
    Scenario(
        "cut stream, aggregator (streamed answer), best_proposer_fallback",
        HEALTHY,
        "cut-stream.agg",
        "failed",
        {"best_proposer_fallback": True},
        stream=True,
        names="aggregator",
    ),
    Scenario(
        "malformed JSON, one proposer",
        _one_bad("malformed-json"),
        "ok.agg",
        "degraded",
        reason="bad_response",
    ),
    Scenario(
        "empty content, one proposer",
        _one_bad("empty"),
        "ok.agg",
        "degraded",
        reason="bad_response",
    ),
    Scenario(
        "empty content, aggregator (with fallbacks)",
        HEALTHY,
        "empty.agg",
        "degraded",
        fallbacks=("ok.fallback",),
    ),
    Scenario(
        "slow first token, aggregator (streamed answer)",
        HEALTHY,
        "slow-first-token.agg",
        "answered",
        stream=True,
    ),
    Scenario("one proposer down for good", _one_bad(REFUSED), "ok.agg", "degraded"),
    Scenario(
        "aggregator down, no fallbacks",
        HEALTHY,
        f"{REFUSED}.agg",
        "failed",
        names="aggregator",
    ),
    Scenario(
        "aggregator down, with fallbacks",
        HEALTHY,
        f"{REFUSED}.agg",
        "degraded",
        fallbacks=(f"{REFUSED}.fallback1", "ok.fallback2"),
    ),
    Scenario(
        "aggregator down, best_proposer_fallback",
        HEALTHY,
        f"{REFUSED}.agg",
        "degraded",
        {"best_proposer_fallback": True},
    ),
    Scenario(
        "every proposer down",
        tuple(f"{REFUSED}.p{i}" for i in (1, 2, 3)),
        "ok.agg",
        "failed",
        names="layer 1",
    ),
)


@dataclass
class Outcome:
    """What became of one question."""

    kind: Kind
    latency_s: float | None = None
    degradations: list[str] = field(default_factory=list)
    call_reasons: list[str] = field(default_factory=list)
    """The reason of each failed call in the answer's records."""
    error: str | None = None


@dataclass
class Row:
    """One scenario's results."""

    scenario: Scenario
    asked: int
    outcomes: list[Outcome]
    requests: Counter[str]
    """Requests the server received per model during the row."""
    client: str = ""
    """The built clients' timeout and retries, as the stack set them."""
    build_error: str | None = None
    wall_s: float = 0.0
    held: int = 0
    """Stalled requests the server still held up to a second after the last question
    ended: calls given up on but not cancelled."""

    def count(self, kind: Kind) -> int:
        """How many questions ended so."""
        return sum(o.kind == kind for o in self.outcomes)

    @property
    def lost(self) -> int:
        """Asked without any outcome, plus outcomes sorted as lost."""
        return self.asked - len(self.outcomes) + self.count("lost")

    def latency(self, quantile: float) -> float | None:
        """A latency quantile over every question with an outcome (hung ones excluded)."""
        values = sorted(o.latency_s for o in self.outcomes if o.latency_s is not None)
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[round(quantile * 100) - 1]

    @property
    def first_error(self) -> str | None:
        """The first failure's message."""
        return self.build_error or next((o.error for o in self.outcomes if o.error), None)

    @property
    def wrong_errors(self) -> int:
        """Failures whose message does not name what the scenario says it must."""
        names = self.scenario.names
        return sum(
            o.kind == "failed" and bool(names) and names not in (o.error or "")
            for o in self.outcomes
        )

    @property
    def unexplained(self) -> int:
        """Degraded answers without their reason, or without the expected call reason."""
        reason = self.scenario.reason
        return sum(
            o.kind == "degraded"
            and (
                NO_REASON in o.degradations
                or NOT_MARKED in o.degradations
                or bool(reason and reason not in o.call_reasons)
            )
            for o in self.outcomes
        )

    @property
    def ok(self) -> bool:
        """Every question ended as expected, with its reason; none hung, none lost."""
        return (
            self.build_error is None
            and self.lost == 0
            and self.count("hung") == 0
            and self.count(self.scenario.expect) == self.asked
            and self.wrong_errors == 0
            and self.unexplained == 0
            and self.held == 0
        )


def _entry(name: str, server: FaultServer) -> dict[str, Any]:
    url = server.refused_base_url if name.startswith(REFUSED) else server.base_url
    return {"model": f"openai:{name}", "base_url": url}


def build(scenario: Scenario, server: FaultServer) -> ChatMoA:
    """The scenario's stack: every model a ``ChatOpenAI`` of the fault server."""
    fields: dict[str, Any] = {
        "proposers": [_entry(name, server) for name in scenario.proposers],
        "layers": 2,
        "aggregator": _entry(scenario.aggregator, server),
        "timeout_s": TIMEOUT_S,
        "max_retries": MAX_RETRIES,
        **scenario.settings,
    }
    if scenario.fallbacks:
        fields["fallbacks"] = [_entry(name, server) for name in scenario.fallbacks]
    return ChatMoA(**fields)


def _client(moa: ChatMoA) -> str:
    model = moa.stack.aggregator
    timeout = getattr(model, "request_timeout", None)
    retries = getattr(model, "max_retries", None)
    return f"{type(model).__name__}(timeout={timeout}, max_retries={retries})"


def classify(message: BaseMessage, latency_s: float) -> Outcome:
    """Sort an answer: answered, degraded (and why), or unclear when empty or spliced."""
    metadata = message.response_metadata
    calls = [call for layer in metadata.get("layers") or [] for call in layer]
    failed = [c for c in calls if c.get("error")]
    reasons = [str(c.get("reason") or "(no reason)") for c in failed]
    if not message.text.strip() and not getattr(message, "tool_calls", None):
        return Outcome(
            "unclear", latency_s, call_reasons=reasons, error="an answer with no content"
        )
    if message.text.count(REPLY_PREFIX) > 1:
        # Every reply of the fault server is one such sentence: two are two
        # models' answers run together (a stream that restarted mid-answer).
        error = f"two replies spliced into one answer: {message.text!r}"
        return Outcome("unclear", latency_s, call_reasons=reasons, error=error)
    if metadata.get("degraded"):
        why = [str(d) for d in metadata.get("degradations") or []] or [NO_REASON]
        return Outcome("degraded", latency_s, why, reasons)
    if failed:
        return Outcome("degraded", latency_s, [NOT_MARKED], reasons)
    return Outcome("answered", latency_s, call_reasons=reasons)


def _is_clear(error: Exception) -> bool:
    # The library's own errors name the layer or aggregator and each reason;
    # a provider's exception escaping as it is does not say where it happened.
    return type(error).__module__.startswith("langchain_moa") and bool(str(error).strip())


async def _query(moa: ChatMoA, question: str, *, stream: bool) -> Outcome:
    started = time.perf_counter()
    try:
        if stream:
            message: BaseMessage | None = None
            async for chunk in moa.astream(question):
                message = chunk if message is None else message + chunk  # type: ignore[operator]
            answer = message or AIMessage(content="")
        else:
            answer = await moa.ainvoke(question)
    except Exception as error:  # noqa: BLE001 - every failure is an outcome to sort
        latency = time.perf_counter() - started
        kind: Kind = "failed" if _is_clear(error) else "unclear"
        return Outcome(kind, latency, error=f"{type(error).__name__}: {error}")
    return classify(answer, time.perf_counter() - started)


async def ask(moa: ChatMoA, question: str, *, stream: bool, hang_after_s: float) -> Outcome:
    """One question; ``hung`` if it has no outcome after ``hang_after_s``."""
    task = asyncio.ensure_future(_query(moa, question, stream=stream))
    done, _ = await asyncio.wait({task}, timeout=hang_after_s)
    if not done:
        task.cancel()  # not awaited: a hung call may not even end when cancelled
        return Outcome("hung", error=f"no outcome after {hang_after_s:g} s")
    try:
        return task.result()
    except asyncio.CancelledError:
        # ainvoke let a cancellation out: the question has no answer and no error.
        return Outcome("lost", error="CancelledError escaped the call")


def question(number: int) -> str:
    """The ``number``-th question (each one's latencies are seeded by its text)."""
    return f"Question {number}: what is {number} times {number + 7}?"


async def run_group(
    scenarios: Sequence[Scenario],
    server: FaultServer,
    *,
    queries: int,
    concurrency: int,
    hang_after_s: float,
) -> list[Row]:
    """Ask ``queries`` questions of each scenario's stack, ``concurrency`` at a time.

    Scenarios run together take turns question by question, so that they are
    measured under the same load: what the deadline comparison needs on a
    machine whose other work comes and goes.
    """
    before = Counter(server.requests)
    started = time.perf_counter()
    stacks: dict[int, ChatMoA] = {}
    rows = []
    for number, scenario in enumerate(scenarios):
        try:
            stacks[number] = build(scenario, server)
        except Exception as error:  # noqa: BLE001 - a stack the library refuses is a result
            built = f"{type(error).__name__}: {error}"
            rows.append(Row(scenario, queries, [], Counter(), build_error=built))
        else:
            rows.append(Row(scenario, queries, [], Counter(), client=_client(stacks[number])))
    gate = asyncio.Semaphore(concurrency)

    async def one(number: int, index: int) -> None:
        async with gate:
            scenario = scenarios[index]
            outcome = await ask(
                stacks[index], question(number), stream=scenario.stream, hang_after_s=hang_after_s
            )
        rows[index].outcomes.append(outcome)

    # A worker that fails leaves its question without an outcome: lost.
    await asyncio.gather(
        *(one(n, i) for n in range(queries) for i in stacks), return_exceptions=True
    )
    wall_s = time.perf_counter() - started
    # A cancelled call closes its connection, which ends the server's hold.
    for _ in range(20):
        if not server.stalled:
            break
        await asyncio.sleep(0.05)
    requests = Counter(server.requests)
    requests.subtract(before)
    for row in rows:
        row.requests = +requests
        row.wall_s = wall_s
        row.held = server.stalled
    return rows


@dataclass
class Report:
    """Every row, and how the run was set up."""

    rows: list[Row]
    queries: int
    concurrency: int
    wall_s: float
    deadline_concurrency: int = DEADLINE_CONCURRENCY
    """Questions at a time in the deadline rows."""
    load: tuple[float, float, float] = field(default_factory=os.getloadavg)
    """The machine's load averages when the run ended (latencies depend on it)."""

    def row(self, name: str) -> Row:
        """The row of the scenario named ``name``."""
        return next(r for r in self.rows if r.scenario.name == name)

    def deadline_ratios(self) -> dict[str, float | None]:
        """p95 of each stalled-with-deadline stack over the same stack without the staller."""
        base = self.row(WITHOUT_STALLED).latency(0.95)
        ratios: dict[str, float | None] = {}
        for name in (STALLED_DEADLINE, STALLED_QUORUM):
            p95 = self.row(name).latency(0.95)
            ratios[name] = None if p95 is None or not base else p95 / base
        return ratios

    def markdown(self) -> str:
        """The table, each row's reasons and first error, and the deadline comparison."""
        lines = [
            (
                f"{self.queries} queries per scenario, {self.concurrency} at a time "
                f"({self.deadline_concurrency} in the deadline rows); "
                f"timeout_s={TIMEOUT_S}, max_retries={MAX_RETRIES}; 2 layers (3 proposers "
                f"and an aggregator); {self.wall_s:.0f} s in all, on {os.cpu_count()} CPUs "
                f"with load averages {self.load[0]:.1f} / {self.load[1]:.1f} / "
                f"{self.load[2]:.1f} (1 / 5 / 15 min) at the end."
            ),
            "",
            (
                "| scenario | expected | asked | answered | degraded | failed (clear error) "
                "| unclear | hung | lost | p50 s | p95 s | failed calls' reasons | ok |"
            ),
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
        ]
        for row in self.rows:
            reasons = Counter(r for o in row.outcomes for r in o.call_reasons)
            cells = [
                row.scenario.name,
                row.scenario.expect,
                str(row.asked),
                *(str(row.count(k)) for k in ("answered", "degraded", "failed", "unclear", "hung")),
                str(row.lost),
                _seconds(row.latency(0.5)),
                _seconds(row.latency(0.95)),
                ", ".join(f"{r} {n}" for r, n in reasons.most_common()) or "-",
                "yes" if row.ok else "**NO**",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "### Per scenario", ""]
        for row in self.rows:
            lines.append(f"- **{row.scenario.name}** ({row.wall_s:.1f} s; {row.client})")
            degradations = Counter(d for o in row.outcomes for d in o.degradations)
            lines.extend(f"  - degraded {n}x: {d}" for d, n in degradations.most_common())
            if row.first_error:
                lines.append(f"  - first error: {_clip(row.first_error)}")
            if row.unexplained:
                lines.append(
                    f"  - {row.unexplained} degraded answer(s) without their reason "
                    f"(expected call reason: {row.scenario.reason or 'any'})"
                )
            if row.held:
                lines.append(
                    f"  - {row.held} stalled request(s) still held: given up, not cancelled"
                )
            if row.wrong_errors:
                lines.append(
                    f"  - {row.wrong_errors} failure(s) do not name {row.scenario.names!r}"
                )
            sent = ", ".join(f"{m} {n}" for m, n in sorted(row.requests.items()))
            whose = f" (group {row.scenario.group!r}, together)" if row.scenario.group else ""
            lines.append(f"  - requests the server saw{whose}: {sent or 'none'}")
        lines += self._deadline_lines()
        return "\n".join(lines) + "\n"

    def _deadline_lines(self) -> list[str]:
        names = {row.scenario.name for row in self.rows}
        if not {WITHOUT_STALLED, STALLED_DEADLINE, STALLED_QUORUM} <= names:
            return []  # a run of other scenarios
        base = self.row(WITHOUT_STALLED)
        lines = [
            "",
            "### Deadline: one proposer stalled vs the same stack without it",
            "",
            "| stack | p50 s | p95 s | p95 / baseline p95 |",
            "|---|--:|--:|--:|",
            (
                f"| {base.scenario.name} | {_seconds(base.latency(0.5))} "
                f"| {_seconds(base.latency(0.95))} | 1.00 |"
            ),
        ]
        for name, ratio in self.deadline_ratios().items():
            row = self.row(name)
            shown = "n/a" if ratio is None else f"{ratio:.2f}"
            lines.append(
                f"| {name} ({_settings(row.scenario)}) | {_seconds(row.latency(0.5))} "
                f"| {_seconds(row.latency(0.95))} | {shown} |"
            )
        lines.append("")
        lines.append(
            f"Asked {self.deadline_concurrency} at a time, the three stacks taking turns "
            "question by question. Target: p95 / baseline p95 <= 1.2."
        )
        return lines

    def summary(self) -> dict[str, Any]:
        """The numbers the published tables are made of (`summary_markdown`), as JSON."""
        rows = []
        for row in self.rows:
            reasons = Counter(r for o in row.outcomes for r in o.call_reasons)
            rows.append(
                {
                    "scenario": row.scenario.name,
                    "expect": row.scenario.expect,
                    "asked": row.asked,
                    **{k: row.count(k) for k in ("answered", "degraded", "failed", "unclear")},
                    "hung": row.count("hung"),
                    "lost": row.lost,
                    "p50_s": row.latency(0.5),
                    "p95_s": row.latency(0.95),
                    "reasons": dict(reasons.most_common()),
                    "ok": row.ok,
                    "settings": {k: str(v) for k, v in row.scenario.settings.items()},
                }
            )
        ratios = (
            self.deadline_ratios()
            if {r["scenario"] for r in rows} >= {WITHOUT_STALLED, STALLED_DEADLINE, STALLED_QUORUM}
            else {}
        )
        return {
            "queries": self.queries,
            "concurrency": self.concurrency,
            "deadline_concurrency": self.deadline_concurrency,
            "timeout_s": TIMEOUT_S,
            "max_retries": MAX_RETRIES,
            "wall_s": self.wall_s,
            "load": list(self.load),
            "rows": rows,
            "deadline_ratios": ratios,
        }


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """docs/failures.md's tables: every scenario's outcomes, then the deadline comparison."""
    lines = [
        (
            "| fault | asked | answered | degraded | failed (clear error) | unclear | hung "
            "| lost | p95 s | failed calls' reasons | as expected |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for row in summary["rows"]:
        reasons = ", ".join(f"`{r}` {n}" for r, n in row["reasons"].items()) or "-"
        cells = [
            row["scenario"],
            *(str(row[k]) for k in ("asked", "answered", "degraded", "failed", "unclear")),
            str(row["hung"]),
            str(row["lost"]),
            _seconds(row["p95_s"]),
            reasons,
            "yes" if row["ok"] else "**NO**",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    ratios = summary["deadline_ratios"]
    if ratios:
        by_name = {row["scenario"]: row for row in summary["rows"]}
        lines += [
            "",
            "| one proposer stalled | p50 s | p95 s | p95 / the stack without it |",
            "|---|--:|--:|--:|",
        ]
        for name in (WITHOUT_STALLED, *ratios):
            row = by_name[name]
            ratio = 1.0 if name == WITHOUT_STALLED else ratios[name]
            settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
            label = f"{name} ({settings})" if settings else name
            shown = "n/a" if ratio is None else f"{ratio:.2f}"
            lines.append(
                f"| {label} | {_seconds(row['p50_s'])} | {_seconds(row['p95_s'])} | {shown} |"
            )
    return "\n".join(lines)


def _settings(scenario: Scenario) -> str:
    return ", ".join(f"{k}={v}" for k, v in scenario.settings.items())


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _clip(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def run_benchmark(
    *,
    queries: int = 100,
    concurrency: int = 16,
    deadline_concurrency: int = DEADLINE_CONCURRENCY,
    hang_after_s: float = 10 * TIMEOUT_S,
    scenarios: Sequence[Scenario] = SCENARIOS,
    progress: bool = False,
) -> Report:
    """Run every scenario against one fault server; the report of all rows.

    The deadline rows ask ``min(concurrency, deadline_concurrency)`` at a time.
    """
    deadline_concurrency = min(concurrency, deadline_concurrency)
    started = time.perf_counter()
    rows: list[Row] = []
    with FaultServer() as server:
        # One-time costs (connections, lazy imports) are not the first row's latency.
        await run_group(scenarios[:1], server, queries=2, concurrency=2, hang_after_s=hang_after_s)
        for name, group in itertools.groupby(scenarios, key=lambda s: s.group or s.name):
            together = list(group)
            done = await run_group(
                together,
                server,
                queries=queries,
                concurrency=deadline_concurrency if name == DEADLINE_GROUP else concurrency,
                hang_after_s=hang_after_s,
            )
            rows += done
            if progress:
                names = " + ".join(s.name for s in together)
                print(f"{names}: {done[0].wall_s:.1f} s", file=sys.stderr, flush=True)
        if server.errors:
            msg = f"the fault server itself failed: {server.errors[0]!r}"
            raise RuntimeError(msg)
    wall_s = time.perf_counter() - started
    return Report(rows, queries, concurrency, wall_s, deadline_concurrency)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print (and write) its markdown. 1 if a row is not as expected."""
    # Taken before the run: the code that ran is the checkout's as it started.
    started = provenance(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100, help="questions per scenario")
    parser.add_argument("--concurrency", type=int, default=16, help="questions at a time")
    parser.add_argument(
        "--deadline-concurrency",
        type=int,
        default=DEADLINE_CONCURRENCY,
        help="questions at a time in the deadline comparison (at most --concurrency)",
    )
    parser.add_argument(
        "--hang-after", type=float, default=10 * TIMEOUT_S, help="seconds before a question hangs"
    )
    parser.add_argument("--out", type=Path, help="also write the markdown to this file")
    parser.add_argument(
        "--json", type=Path, help="also write the summary, settings and provenance as JSON"
    )
    args = parser.parse_args(argv)
    # Each failed proposer logs a warning: thousands here, and the table says it all.
    logging.getLogger("langchain_moa").setLevel(logging.ERROR)
    report = asyncio.run(
        run_benchmark(
            queries=args.queries,
            concurrency=args.concurrency,
            deadline_concurrency=args.deadline_concurrency,
            hang_after_s=args.hang_after,
            progress=True,
        )
    )
    text = report.markdown()
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in {"out", "json"}}
        results = {
            "settings": settings,
            "provenance": started,
            **report.summary(),
            # The whole report (each row's first error, the requests the server saw), as printed.
            "markdown": text,
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(row.ok for row in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
