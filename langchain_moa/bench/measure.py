"""The measurements of ``moa bench``: one function each, then a table and JSON.

Every model is a real ``ChatOpenAI`` (``openai_compatible_model``) talking
HTTP to one scheduled server: a child process (``ServerProcess``), as a real
provider is another program, or with ``in_thread`` a ``ScheduledServer`` in a
thread of this process (competing with the clients for the GIL); either way
the records come from the server itself. The critical path of a query
is the server's own schedule: the sum over its stages (proposer layers, then
the aggregator) of the slowest call's scheduled time. Overheads are measured
against the bare client doing the same calls in the same run, interleaved with
ChatMoA's queries so that both meet the same load on a shared machine.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import operator
import os
import platform
import resource
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from langchain_moa.bench.process import BenchServer, ServerProcess
from langchain_moa.bench.provenance import provenance
from langchain_moa.bench.server import Behaviour, Record, ScheduledServer
from langchain_moa.chat_models import ChatMoA
from langchain_moa.graph.prompts import inject_references
from langchain_moa.openai_compatible import NO_KEY, openai_compatible_model

PROPOSERS = 6
LAYERS = 2
"""The paper's shape: 2 proposer layers of 6, then the aggregator (13 calls a query)."""
CALLS = PROPOSERS * LAYERS + 1
AGGREGATOR = "agg"

BEHAVIOURS: dict[str, Behaviour] = {
    "call1s": Behaviour(first_token_s=(0.9, 1.0)),
    "call02to05s": Behaviour(first_token_s=(0.2, 0.5)),
    "zero": Behaviour.fixed(0.0),
    # The answer streams: its first token, then 64 more at 200 a second.
    "stream": Behaviour(first_token_s=(0.2, 0.5), tokens=64, tokens_per_s=200.0),
    "load": Behaviour.fixed(0.05),
    "steady": Behaviour(first_token_s=(0.2, 0.4)),
    # One call in five waits 1.5 s times a Pareto(1.5) draw: p95 of a query is the tail's.
    "heavy": Behaviour(first_token_s=(0.2, 0.4), tail_p=0.2, tail_scale_s=1.5, tail_alpha=1.5),
}
DEADLINE_S = 0.6
"""Measurement 6's layer deadline: past the steady proposers' 0.4 s."""
LOAD_TIMEOUT_S = 60.0
"""Measurement 5's ``timeout_s``: generous, so that a call that fails is one that queued."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """How much of each measurement to run."""

    queries_1s: int = 8
    queries_short: int = 15
    queries_sequential: int = 3
    queries_overhead: int = 60
    queries_ttft: int = 10
    load_queries: int = 200
    provider_limit: int = 16
    queries_tail: int = 40
    tail_concurrency: int = 4

    @classmethod
    def quick(cls, *, load_queries: int = 20, provider_limit: int = 16) -> Settings:
        """A short run (well under a minute): every measurement, few queries."""
        return cls(1, 2, 1, 10, 2, load_queries, provider_limit, 8, 8)


@dataclass
class Bench:
    """One server, a counter of queries and the results so far."""

    server: BenchServer
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    _queries: Iterator[int] = field(default_factory=itertools.count)

    def question(self) -> list[BaseMessage]:
        """A fresh question, tagged with its query number for the server."""
        number = next(self._queries)
        return [HumanMessage(f"[q{number}] Question {number}: what makes a good benchmark?")]

    def model(self, name: str, **settings: Any) -> ChatOpenAI:
        """A real client of the server for model ``name``."""
        settings.setdefault("max_retries", 0)
        return openai_compatible_model(
            name, base_url=self.server.base_url, api_key=NO_KEY, **settings
        )

    def names(self, proposer: str, aggregator: str | None = None) -> list[list[str]]:
        """The paper's shape as model names ``<behaviour>.L<layer>.p<i>``, aggregator last."""
        layers = [[f"{proposer}.L{n}.p{i}" for i in range(PROPOSERS)] for n in range(LAYERS)]
        return [*layers, [f"{aggregator or proposer}.{AGGREGATOR}"]]

    def stack(self, names: list[list[str]], **fields: Any) -> ChatMoA:
        """ChatMoA over ``names`` (from ``names()``), every model a client of the server."""
        settings = fields.pop("model_settings", {})
        return ChatMoA(
            proposer_layers=[[self.model(n, **settings) for n in layer] for layer in names[:-1]],
            aggregator=self.model(names[-1][0], **settings),
            **fields,
        )


def stages(records: Iterable[Record]) -> dict[int | None, dict[str, list[Record]]]:
    """Records by query, then by stage (``L0``, ``L1``..., ``agg``: the name's second part)."""
    found: dict[int | None, dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        stage = record.model.split(".")[1] if record.model.count(".") >= 1 else ""
        found[record.query][stage].append(record)
    return found


def critical_path(by_stage: Mapping[str, list[Record]], *, to_first_token: bool = False) -> float:
    """Sum over stages of the slowest scheduled call; the aggregator's first token if asked."""
    total = 0.0
    for stage, records in by_stage.items():
        if stage == AGGREGATOR and to_first_token:
            total += max(r.schedule.first_token_s for r in records)
        else:
            total += max(r.schedule.total_s for r in records)
    return total


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


def _summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p95": _quantile(values, 0.95),
        "min": min(values),
        "max": max(values),
    }


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def _run_moa(moa: ChatMoA, messages: list[BaseMessage]) -> float:
    return await _timed(lambda: moa.ainvoke(messages))


async def critical_path_ratio(bench: Bench, behaviour: str, queries: int) -> dict[str, Any]:
    """1: ChatMoA's end-to-end time over the critical path, one query at a time.

    The bare clients run the same shape (``asyncio.gather`` a layer, as the
    reference code's async example does) on other questions in between: what
    the clients themselves add on this machine.
    """
    names = bench.names(behaviour)
    moa = bench.stack(names)
    proposers, aggregator = _clients(bench, names)
    await moa.ainvoke(bench.question())  # connections and lazy imports are not the first query's
    await _bare_moa(proposers, aggregator, bench.question(), sequential=False)
    bench.server.reset()
    walls: dict[int, float] = {}
    bare: dict[int, float] = {}
    for _ in range(queries):
        question = bench.question()
        walls[_query(question)] = await _run_moa(moa, question)
        question = bench.question()
        bare[_query(question)] = await _timed(
            partial(_bare_moa, proposers, aggregator, question, sequential=False)
        )
    found = stages(bench.server.reset())
    ratios = [walls[q] / critical_path(found[q]) for q in walls]
    bare_ratios = [bare[q] / critical_path(found[q]) for q in bare]
    return {
        "behaviour": behaviour,
        "queries": queries,
        "calls_per_query": CALLS,
        "ratio": _summary(ratios),
        "bare_clients_ratio": _summary(bare_ratios),
        "wall_s": _summary(list(walls.values())),
        "critical_path_s": _summary([critical_path(found[q]) for q in walls]),
        "value": statistics.median(ratios),
    }


def _query(messages: list[BaseMessage]) -> int:
    text = str(messages[-1].content)
    return int(text[2 : text.index("]")])


async def _bare_moa(
    proposers: list[list[ChatOpenAI]],
    aggregator: ChatOpenAI,
    messages: list[BaseMessage],
    *,
    sequential: bool,
) -> None:
    """The same calls as ChatMoA with the bare clients: the reference scripts' MoA."""
    references: list[str] = []
    for layer in [*proposers, [aggregator]]:
        shown = inject_references(messages, references)
        if sequential:
            replies = [await model.ainvoke(shown) for model in layer]
        else:
            replies = await asyncio.gather(*(model.ainvoke(shown) for model in layer))
        references = [reply.text for reply in replies]


def _clients(bench: Bench, names: list[list[str]]) -> tuple[list[list[ChatOpenAI]], ChatOpenAI]:
    return [[bench.model(n) for n in layer] for layer in names[:-1]], bench.model(names[-1][0])


async def sequential_speedup(bench: Bench, behaviour: str, queries: int) -> dict[str, Any]:
    """2: the same stack run proposer after proposer, against ChatMoA, same questions."""
    names = bench.names(behaviour)
    moa = bench.stack(names)
    proposers, aggregator = _clients(bench, names)
    await _bare_moa(proposers, aggregator, bench.question(), sequential=False)
    await moa.ainvoke(bench.question())
    sequential, parallel = [], []
    for _ in range(queries):
        question = bench.question()
        parallel.append(await _run_moa(moa, question))
        sequential.append(
            await _timed(partial(_bare_moa, proposers, aggregator, question, sequential=True))
        )
    bench.server.reset()
    return {
        "behaviour": behaviour,
        "queries": queries,
        "chat_moa_s": _summary(parallel),
        "sequential_s": _summary(sequential),
        "value": statistics.median(sequential) / statistics.median(parallel),
    }


class _PlainState(TypedDict):
    messages: list[BaseMessage]
    references: Annotated[list[str], operator.add]


def _plain_graph(proposers: list[list[ChatOpenAI]], aggregator: ChatOpenAI) -> Any:
    """The same calls in a plain LangGraph graph: a node a call, nothing of ChatMoA's.

    What LangGraph itself costs for this shape; ChatMoA's overhead is the rest.
    """
    graph = StateGraph(_PlainState)
    previous = [START]
    for number, layer in enumerate([*proposers, [aggregator]]):
        names = [f"l{number}p{index}" for index in range(len(layer))]
        for name, model in zip(names, layer, strict=True):

            async def call(
                state: _PlainState,
                config: RunnableConfig,
                model: ChatOpenAI = model,
                later: bool = number > 0,  # noqa: FBT001 - bound per node
            ) -> dict[str, Any]:
                # The layer before wrote the last PROPOSERS references.
                shown = state["references"][-PROPOSERS:] if later else []
                reply = await model.ainvoke(inject_references(state["messages"], shown), config)
                return {"references": [reply.text]}

            graph.add_node(name, call)
            graph.add_edge(previous if len(previous) > 1 else previous[0], name)
        previous = names
    graph.add_edge(previous[0], END)
    return graph.compile()


async def orchestration_overhead(bench: Bench, queries: int) -> dict[str, Any]:
    """3: per call, ChatMoA's time at zero delay beyond the bare clients doing the same calls.

    The bare run has the same shape (6 calls at once, 6 at once, then one) with
    the same messages; ChatMoA, bare and a plain LangGraph graph of the same
    calls (LangGraph's own share) alternate.
    """
    names = bench.names("zero")
    moa = bench.stack(names)
    proposers, aggregator = _clients(bench, names)
    plain = _plain_graph(proposers, aggregator)
    single = proposers[0][0]

    async def in_plain_graph(question: list[BaseMessage]) -> None:
        await plain.ainvoke({"messages": question, "references": []})

    for _ in range(3):
        await moa.ainvoke(bench.question())
        await _bare_moa(proposers, aggregator, bench.question(), sequential=False)
        await in_plain_graph(bench.question())
    moa_s, bare_s, plain_s, one_s = [], [], [], []
    for _ in range(queries):
        moa_s.append(await _run_moa(moa, bench.question()))
        question = bench.question()
        bare_s.append(
            await _timed(partial(_bare_moa, proposers, aggregator, question, sequential=False))
        )
        plain_s.append(await _timed(partial(in_plain_graph, bench.question())))
        one_s.append(await _timed(partial(single.ainvoke, question)))
    bench.server.reset()
    moa_median, bare_median = statistics.median(moa_s), statistics.median(bare_s)
    return {
        "queries": queries,
        "chat_moa_ms_per_query": _summary([s * 1e3 for s in moa_s]),
        "bare_same_shape_ms_per_query": _summary([s * 1e3 for s in bare_s]),
        "plain_langgraph_ms_per_query": _summary([s * 1e3 for s in plain_s]),
        "bare_client_ms_per_call": statistics.median(one_s) * 1e3,
        "plain_langgraph_ms_per_call": (statistics.median(plain_s) - bare_median) / CALLS * 1e3,
        "value": (moa_median - bare_median) / CALLS * 1e3,
    }


async def ttft_ratio(bench: Bench, queries: int) -> dict[str, Any]:
    """4: the streamed answer's first token against the critical path to the aggregator's."""
    moa = bench.stack(bench.names("call02to05s", "stream"))

    async def first_token(messages: list[BaseMessage]) -> float:
        started = time.perf_counter()
        first = None
        async for chunk in moa.astream(messages):
            if first is None and chunk.text:
                first = time.perf_counter() - started
        assert first is not None  # noqa: S101 - the server always sends tokens
        return first

    await first_token(bench.question())
    bench.server.reset()
    ttfts = {}
    for _ in range(queries):
        question = bench.question()
        ttfts[_query(question)] = await first_token(question)
    found = stages(bench.server.reset())
    ratios = [ttfts[q] / critical_path(found[q], to_first_token=True) for q in ttfts]
    return {
        "queries": queries,
        "ttft_s": _summary(list(ttfts.values())),
        "ratio": _summary(ratios),
        "value": statistics.median(ratios),
    }


def _thread_cpu_s(thread_id: int | None) -> float:
    if thread_id is None:
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread_id))
    except (AttributeError, OSError):  # not Linux-like: the server's CPU is counted too
        return 0.0


async def concurrent_load(bench: Bench, queries: int, limit: int) -> dict[str, Any]:
    """5: ``queries`` MoA queries at once through a per-provider limit of ``limit``."""
    moa = bench.stack(
        bench.names("load"),
        timeout_s=LOAD_TIMEOUT_S,
        min_proposers=PROPOSERS,
        provider_limits={bench.server.base_url: {"max_concurrency": limit}},
    )
    await moa.ainvoke(bench.question())
    bench.server.reset()
    server_thread = bench.server.thread_id
    cpu = time.process_time() - _thread_cpu_s(server_thread)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    outcomes = await asyncio.gather(
        *(moa.ainvoke(bench.question()) for _ in range(queries)), return_exceptions=True
    )
    wall = time.perf_counter() - started
    cpu = time.process_time() - _thread_cpu_s(server_thread) - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    answered = sum(
        1
        for outcome in outcomes
        if not isinstance(outcome, BaseException)
        and outcome.text
        and not outcome.response_metadata.get("degraded")
    )
    errors = sorted({repr(o)[:200] for o in outcomes if isinstance(o, BaseException)})
    peak_in_flight = bench.server.peak_in_flight()
    records = bench.server.reset()
    return {
        "queries": queries,
        "answered": answered,
        "calls": len(records),
        "limit": limit,
        "peak_in_flight": peak_in_flight,
        "within_limit": peak_in_flight <= limit,
        "wall_s": wall,
        "client_cpu_ms_per_query": cpu / queries * 1e3,
        # ru_maxrss is KiB on Linux.
        "peak_rss_mib": peak / 1024,
        "peak_rss_growth_mib": (peak - peak_before) / 1024,
        "errors": errors[:5],
        "value": answered,
    }


async def deadline_tail(bench: Bench, queries: int, concurrency: int) -> dict[str, Any]:
    """6: a heavy-tailed proposer: p50 and p95 with the layer deadline against waiting for all."""
    names = bench.names("steady")
    for layer in names[:-1]:
        layer[0] = layer[0].replace("steady", "heavy", 1)
    waiting = bench.stack(names)
    deadline = bench.stack(names, deadline_s=DEADLINE_S, min_proposers=PROPOSERS - 1)
    await asyncio.gather(waiting.ainvoke(bench.question()), deadline.ainvoke(bench.question()))
    times: dict[str, list[float]] = {"deadline": [], "all": []}
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str, moa: ChatMoA, question: list[BaseMessage]) -> None:
        async with gate:
            times[name].append(await _run_moa(moa, question))

    questions = [bench.question() for _ in range(queries)]
    # The same questions to both stacks: their first layers draw the same tails.
    await asyncio.gather(
        *(one(n, m, q) for q in questions for n, m in (("deadline", deadline), ("all", waiting)))
    )
    bench.server.reset()
    p95 = {name: _quantile(values, 0.95) for name, values in times.items()}
    return {
        "queries": queries,
        "concurrency": concurrency,
        "deadline_s": DEADLINE_S,
        "with_deadline_s": _summary(times["deadline"]),
        "waiting_for_all_s": _summary(times["all"]),
        "value": p95["deadline"] / p95["all"],
    }


@dataclass(frozen=True)
class Measurement:
    """One measurement of ``moa bench``: how it runs, its target, its table row."""

    number: int
    """Its number in the table and in ``--only``."""
    name: str
    """Its key in the JSON report."""
    measure: Callable[[Bench, Settings], Awaitable[dict[str, Any]]]
    """Runs it; the result holds ``value`` and what the row says."""
    target: Callable[[Mapping[str, Any]], str]
    holds: Callable[[Mapping[str, Any]], bool]
    label: Callable[[Mapping[str, Any]], str]
    shown: Callable[[Mapping[str, Any]], str] = lambda r: f"{r['value']:.3f}x"
    """The value as the table shows it."""


def _critical_path_label(calls: str) -> Callable[[Mapping[str, Any]], str]:
    def label(result: Mapping[str, Any]) -> str:
        bare = result["bare_clients_ratio"]["median"]
        return (
            f"1. end to end / critical path, {calls} calls (median; the bare clients "
            f"gathered: {bare:.3f}x)"
        )

    return label


def _load_label(result: Mapping[str, Any]) -> str:
    return (
        f"5. {result['queries']} concurrent queries answered "
        f"({result['calls']} calls, peak {result['peak_in_flight']} in flight, "
        f"{result['client_cpu_ms_per_query']:.1f} ms CPU/query, "
        f"peak RSS {result['peak_rss_mib']:.0f} MiB)"
    )


# The targets, one number each.
REGISTRY: tuple[Measurement, ...] = (
    Measurement(
        1,
        "critical_path_1s",
        lambda bench, settings: critical_path_ratio(bench, "call1s", settings.queries_1s),
        target=lambda _: "<= 1.02x",
        holds=lambda r: r["value"] <= 1.02,  # noqa: PLR2004
        label=_critical_path_label("~1 s"),
    ),
    Measurement(
        1,
        "critical_path_02_05s",
        lambda bench, settings: critical_path_ratio(bench, "call02to05s", settings.queries_short),
        target=lambda _: "<= 1.04x",
        holds=lambda r: r["value"] <= 1.04,  # noqa: PLR2004
        label=_critical_path_label("0.2-0.5 s"),
    ),
    Measurement(
        2,
        "speedup_vs_sequential",
        lambda bench, settings: sequential_speedup(
            bench, "call02to05s", settings.queries_sequential
        ),
        target=lambda _: ">= 3x",
        holds=lambda r: r["value"] >= 3,  # noqa: PLR2004
        label=lambda _: "2. sequential (proposer after proposer) / ChatMoA",
    ),
    Measurement(
        3,
        "overhead_ms_per_call",
        lambda bench, settings: orchestration_overhead(bench, settings.queries_overhead),
        target=lambda _: "<= 0.5 ms",
        holds=lambda r: r["value"] <= 0.5,  # noqa: PLR2004
        label=lambda r: (
            "3. orchestration per call at zero delay (bare client: "
            f"{r['bare_client_ms_per_call']:.2f} ms/call; a plain LangGraph graph of "
            f"the same calls: {r['plain_langgraph_ms_per_call']:.2f} ms/call)"
        ),
        shown=lambda r: f"{r['value']:.3f} ms",
    ),
    Measurement(
        4,
        "ttft_vs_critical_path",
        lambda bench, settings: ttft_ratio(bench, settings.queries_ttft),
        target=lambda _: "<= 1.05x",
        holds=lambda r: r["value"] <= 1.05,  # noqa: PLR2004
        label=lambda _: "4. streamed first token / critical path to aggregator's first token",
    ),
    Measurement(
        5,
        "concurrent_load",
        lambda bench, settings: concurrent_load(
            bench, settings.load_queries, settings.provider_limit
        ),
        target=lambda r: f"all, <= {r['limit']} in flight",
        holds=lambda r: r["value"] == r["queries"] and bool(r["within_limit"]),
        label=_load_label,
        shown=lambda r: f"{r['value']}/{r['queries']}",
    ),
    Measurement(
        6,
        "deadline_p95_ratio",
        lambda bench, settings: deadline_tail(
            bench, settings.queries_tail, settings.tail_concurrency
        ),
        target=lambda _: "<= 0.6x",
        holds=lambda r: r["value"] <= 0.6,  # noqa: PLR2004
        label=lambda r: (
            f"6. heavy tail: p95 with deadline_s / waiting for all "
            f"(p50 {r['with_deadline_s']['median']:.2f} s vs "
            f"{r['waiting_for_all_s']['median']:.2f} s)"
        ),
    ),
)
"""Every measurement, in the table's order: the one place one is defined."""

MEASUREMENTS = tuple(sorted({m.number for m in REGISTRY}))
"""The numbers ``--only`` takes."""


def scheduled_server(
    behaviours: Mapping[str, Behaviour], *, in_thread: bool = False
) -> AbstractContextManager[BenchServer]:
    """The scheduled server: a child process, or with ``in_thread`` a thread of this one."""
    return ScheduledServer(behaviours) if in_thread else ServerProcess(behaviours)


async def run(
    settings: Settings, only: Iterable[int] = MEASUREMENTS, *, in_thread: bool = False
) -> dict[str, Any]:
    """Run the chosen measurements against one server; the JSON-ready report."""
    chosen = set(only)
    # Thousands of degraded or late calls would each log a warning.
    logging.getLogger("langchain_moa").setLevel(logging.ERROR)
    started = time.perf_counter()
    with scheduled_server(BEHAVIOURS, in_thread=in_thread) as server:
        bench = Bench(server)
        for measurement in REGISTRY:
            if measurement.number in chosen:
                step_started = time.perf_counter()
                result = await measurement.measure(bench, settings)
                bench.results[measurement.name] = {"measurement": measurement.number, **result}
                bench.results[measurement.name]["seconds"] = time.perf_counter() - step_started
        if errors := server.errors:
            msg = f"the benchmark's server itself failed: {errors[0]!r}"
            raise RuntimeError(msg)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "server": "thread" if in_thread else "process",
        "settings": settings.__dict__,
        "seconds": time.perf_counter() - started,
        "measurements": bench.results,
        "table": table_rows(bench.results),
    }


def table_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per measured value: measurement, value, target, whether it holds."""
    by_name = {m.name: m for m in REGISTRY}
    return [
        {
            "measurement": by_name[name].label(result),
            "value": by_name[name].shown(result),
            "target": by_name[name].target(result),
            "holds": bool(by_name[name].holds(result)),
        }
        for name, result in results.items()
    ]


def markdown(report: Mapping[str, Any]) -> str:
    """The report's table, in markdown."""
    lines = ["| measurement | value | target | holds |", "|---|---|---|---|"]
    lines += [
        f"| {row['measurement']} | {row['value']} | {row['target']} | "
        f"{'yes' if row['holds'] else 'no'} |"
        for row in report["table"]
    ]
    return "\n".join(lines)


def main(
    *,
    out: str | None = None,
    quick: bool = False,
    only: Iterable[int] = MEASUREMENTS,
    queries: int | None = None,
    limit: int | None = None,
    in_thread: bool = False,
) -> int:
    """Run the benchmark, print its table, write its JSON to ``out``; 0 if every target holds."""
    settings = Settings.quick() if quick else Settings()
    changes = {"load_queries": queries, "provider_limit": limit}
    settings = replace(settings, **{k: v for k, v in changes.items() if v is not None})
    # Taken before the run: the code that ran is the checkout's as it started.
    started = provenance()
    report = asyncio.run(run(settings, only, in_thread=in_thread))
    report["provenance"] = started
    print(markdown(report))
    if out is not None:
        Path(out).write_text(dumps(report) + "\n")
    return 0 if all(row["holds"] for row in report["table"]) else 1


def dumps(report: Mapping[str, Any]) -> str:
    """The report as JSON."""
    return json.dumps(report, indent=2, default=str)
