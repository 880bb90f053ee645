"""Time to first token and GSM8K accuracy of ``staircase`` against ``synthesize``.

Both stacks have the embedded stack's shape (``ChatMoA.local``): 3 SmolLM2-135M
proposers (seeds 1-3) and a SmolLM2 aggregator (seed 0), one proposer layer,
the same ``max_tokens`` and temperature. Each model has a llama.cpp server of
its own, so the proposers and the aggregator can run at the same time (one
shared server answers one request at a time, and a staircase step would queue
behind the proposals it is meant to overlap). Both strategies use the same
servers and models.

The questions are the first ``--limit`` GSM8K test problems shipped in the eval
package, with its instruction, scored by its scorer (strict ``#### n`` and
flexible last number). Each question is asked of both strategies, the order
swapped from one question to the next, after one unmeasured run of each.
Every answer is streamed: the time to first token is measured at the client
(the first chunk with text) and read from the answer's accounting
(``response_metadata["accounting"]["total"]["ttft_s"]``).

With ``--scheduled`` it measures time alone, where the models really run side
by side: every model is a client of the benchmark's scheduled server
(``langchain_moa.bench.server``, in a child process), whose replies are
``--max-tokens`` words at a fixed pace after a fixed wait. No CPU is shared
between the calls, as with models on separate GPUs or providers, and there is
no answer to score.

Usage::

    .venv/bin/python benchmarks/staircase.py [--limit 8] [--max-tokens 128]
        [--step-tokens 16] [--threads 1] [--out FILE.json]
    .venv/bin/python benchmarks/staircase.py --scheduled [--limit 8] [--max-tokens 256]
        [--tokens-per-s 50] [--step-tokens 16]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, HumanMessage

from langchain_moa import ChatMoA, LlamaServer, get_calls
from langchain_moa.bench.process import ServerProcess
from langchain_moa.bench.provenance import provenance
from langchain_moa.bench.server import Behaviour
from langchain_moa.eval.gsm8k import INSTRUCTION, load_problems, score
from langchain_moa.openai_compatible import NO_KEY, openai_compatible_model
from langchain_moa.stacks import ModelConfig
from langchain_moa.stacks.presets import LOCAL_TEMPERATURE, local_spec
from langchain_moa.stacks.strategy import Staircase, Strategy, Synthesize

WARM_UP = "What is 2 + 3? Answer in one sentence."


def stacks(
    servers: Sequence[LlamaServer], *, proposers: int, max_tokens: int, step_tokens: int
) -> dict[str, ChatMoA]:
    """The two stacks, on the same models: a server for each proposer, one for the aggregator."""
    spec = local_spec(layers=2, proposers=proposers, max_tokens=max_tokens)
    defaults = spec.generation_defaults()
    entries = [*(spec.proposers or []), spec.aggregator]
    models: list[BaseChatModel] = [
        server.chat_model(**cast("ModelConfig", entry).settings(defaults))
        for server, entry in zip(servers, entries, strict=True)
    ]
    return {
        name: ChatMoA(proposers=models[:-1], aggregator=models[-1], layers=2, strategy=strategy)
        for name, strategy in strategies(step_tokens).items()
    }


def strategies(step_tokens: int) -> dict[str, Strategy]:
    """The two strategies compared."""
    return {"synthesize": Synthesize(), "staircase": Staircase(step_tokens=step_tokens)}


def scheduled_stacks(base_url: str, *, proposers: int, step_tokens: int) -> dict[str, ChatMoA]:
    """The two stacks with every model a client of the scheduled server."""

    def model(name: str) -> BaseChatModel:
        return openai_compatible_model(name, base_url=base_url, api_key=NO_KEY, max_retries=0)

    return {
        name: ChatMoA(
            proposers=[model(f"model.p{i}") for i in range(proposers)],
            aggregator=model("model.agg"),
            layers=2,
            strategy=strategy,
        )
        for name, strategy in strategies(step_tokens).items()
    }


def ask(moa: ChatMoA, question: str) -> dict[str, Any]:
    """Stream one answer: its text, times to first token and latency, calls."""
    started = time.perf_counter()
    first: float | None = None
    answer: AIMessageChunk | None = None
    for chunk in moa.stream([HumanMessage(question)]):
        if first is None and chunk.text:
            first = time.perf_counter() - started
        answer = chunk if answer is None else answer + chunk
    latency = time.perf_counter() - started
    assert answer is not None  # noqa: S101 - the stream ends with the metadata chunk
    calls = get_calls(answer)
    return {
        "output": answer.text,
        "ttft_client_s": first,
        "ttft_s": answer.response_metadata["accounting"]["total"]["ttft_s"],
        "latency_s": latency,
        "aggregator_calls": sum(c["layer"] == 2 for c in calls),  # noqa: PLR2004
        "failures": sum(c["error"] is not None for c in calls),
        "output_tokens": answer.usage_metadata["output_tokens"] if answer.usage_metadata else None,
    }


def summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, float | int | None]:
    """Medians of the times, accuracies in percent, means of the counts."""

    def median(key: str) -> float | None:
        values = [r[key] for r in runs if r[key] is not None]
        return statistics.median(values) if values else None

    return {
        "runs": len(runs),
        "ttft_client_s": median("ttft_client_s"),
        "ttft_s": median("ttft_s"),
        "latency_s": median("latency_s"),
        "accuracy_strict": _percent(runs, "correct_strict"),
        "accuracy_flexible": _percent(runs, "correct_flexible"),
        "aggregator_calls": statistics.mean(r["aggregator_calls"] for r in runs),
        "failures": sum(r["failures"] for r in runs),
    }


def _percent(runs: Sequence[Mapping[str, Any]], key: str) -> float | None:
    if not all(key in r for r in runs):
        return None
    return 100 * sum(r[key] for r in runs) / len(runs)


def _pc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def markdown(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """The table of both strategies, and staircase's change in time to first token."""
    header = (
        "| strategy | questions | TTFT, client (median) | TTFT, accounting (median) "
        "| latency (median) | GSM8K strict | GSM8K flexible | aggregator calls (mean) "
        "| failed calls |"
    )
    lines = [
        header,
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summaries.items():
        lines.append(
            f"| {name} | {s['runs']} | {_s(s['ttft_client_s'])} | {_s(s['ttft_s'])} "
            f"| {_s(s['latency_s'])} | {_pc(s['accuracy_strict'])} "
            f"| {_pc(s['accuracy_flexible'])} | {s['aggregator_calls']:.1f} | {s['failures']} |"
        )
    base, stair = summaries.get("synthesize"), summaries.get("staircase")
    if base and stair and base["ttft_client_s"] and stair["ttft_client_s"] is not None:
        change = 100 * (1 - stair["ttft_client_s"] / base["ttft_client_s"])
        which = "lower" if change >= 0 else "higher"
        lines.append(
            f"\nstaircase's median TTFT (client): {abs(change):.0f}% {which} than synthesize's."
        )
    return "\n".join(lines)


def order_markdown(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Each strategy's client TTFTs, split by whether it ran first or second on a question.

    `compare` asks the strategies in their order on even questions, reversed on odd ones.
    """
    names = list(runs)
    lines = ["| strategy | ran first | ran second |", "|---|---|---|"]
    for name in names:
        split: dict[bool, list[float]] = {True: [], False: []}
        for number, result in enumerate(runs[name]):
            first = (names[0] if number % 2 == 0 else names[-1]) == name
            if result["ttft_client_s"] is not None:
                split[first].append(result["ttft_client_s"])
        cells = [
            f"{', '.join(f'{t:.1f}' for t in times)} s (median {statistics.median(times):.1f} s)"
            if times
            else "-"
            for times in (split[True], split[False])
        ]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def compare(
    moas: Mapping[str, ChatMoA], problems: Sequence[Mapping[str, Any]], *, scored: bool
) -> dict[str, list[dict[str, Any]]]:
    """Ask each question of every stack, the order swapped from one to the next."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in moas}
    for moa in moas.values():
        ask(moa, WARM_UP)
    for number, problem in enumerate(problems):
        names = list(moas) if number % 2 == 0 else list(reversed(moas))
        for name in names:
            result = ask(moas[name], f"{problem['question']}\n\n{INSTRUCTION}")
            if scored:
                result = score({"id": problem["id"], "target": problem["target"], **result})
            runs[name].append(result)
            predicted = f" predicted {result['predicted_flexible']}" if scored else ""
            print(
                f"{problem['id']:>3} {name:<10} ttft {_s(result['ttft_client_s']):>9} "
                f"latency {_s(result['latency_s']):>9}{predicted} (target {problem['target']})",
                file=sys.stderr,
                flush=True,
            )
    return runs


def embedded(
    args: argparse.Namespace, problems: Sequence[Mapping[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Both strategies on the embedded model, a llama.cpp server per model."""
    with ExitStack() as running:
        servers = [
            running.enter_context(LlamaServer(n_threads=args.threads))
            for _ in range(args.proposers + 1)
        ]
        for server in servers:
            # One at a time, before any run: llama-cpp-python silences stdout and stderr
            # while it loads a vocabulary, and loads racing in threads can leave them silenced.
            server.tokenize(WARM_UP)
        moas = stacks(
            servers,
            proposers=args.proposers,
            max_tokens=args.max_tokens,
            step_tokens=args.step_tokens,
        )
        return compare(moas, problems, scored=True)


def scheduled(
    args: argparse.Namespace, problems: Sequence[Mapping[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Both strategies on the scheduled server: time alone."""
    pace = Behaviour.fixed(0.3, tokens=args.max_tokens, tokens_per_s=args.tokens_per_s)
    with ServerProcess({"model": pace}) as server:
        moas = scheduled_stacks(
            server.base_url, proposers=args.proposers, step_tokens=args.step_tokens
        )
        return compare(moas, problems, scored=False)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; print the table (and write every run with ``--out``)."""
    # Taken before the run: the code that ran is the checkout's as it started.
    started = provenance(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--limit", type=int, default=8, help="GSM8K problems (the first ones)")
    parser.add_argument("--proposers", type=int, default=3, help="proposers (one layer)")
    parser.add_argument("--max-tokens", type=int, default=128, help="longest reply of each call")
    parser.add_argument("--step-tokens", type=int, default=16, help="staircase's step_tokens")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each server")
    parser.add_argument("--out", metavar="PATH", help="also write every run as JSON")
    parser.add_argument(
        "--scheduled", action="store_true", help="time alone, on the scheduled server"
    )
    parser.add_argument(
        "--tokens-per-s", type=float, default=50.0, help="the scheduled server's pace"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    problems = load_problems()[: args.limit]
    runs = (scheduled if args.scheduled else embedded)(args, problems)
    summaries = {name: summary(results) for name, results in runs.items()}
    settings = {
        "limit": args.limit,
        "proposers": args.proposers,
        "max_tokens": args.max_tokens,
        "step_tokens": args.step_tokens,
        "threads": args.threads,
        "temperature": None if args.scheduled else LOCAL_TEMPERATURE,
        "scheduled": args.scheduled,
        "tokens_per_s": args.tokens_per_s if args.scheduled else None,
    }
    print(markdown(summaries))
    if args.out:
        report = {
            "settings": settings,
            "provenance": started,
            "summaries": summaries,
            "runs": runs,
        }
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
