"""``moa eval ...``: run the paper's benchmarks, ablations and reports."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import re
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from langchain_core.globals import set_llm_cache
from langchain_core.language_models import BaseChatModel

from langchain_moa.eval import ablation, alpaca, flask, gsm8k, mt_bench, report
from langchain_moa.eval.cache import SQLiteCache
from langchain_moa.eval.data import DATA_DIR_ENV, data_dir, read_json
from langchain_moa.eval.generation import Prices
from langchain_moa.presets import LOCAL_MOA, LOCAL_MODEL, model_from_spec

BENCHMARKS = {"alpaca": "alpaca_eval", "mt-bench": "mt_bench", "flask": "flask", "gsm8k": "gsm8k"}
"""``moa eval NAME`` -> the benchmark's results folder; each has a ``run`` coroutine."""

QUALITY = {
    "alpaca": "length_controlled_winrate",
    "mt-bench": "overall",
    "flask": "average",
    "gsm8k": "accuracy",
}
"""Each benchmark's headline metric."""

GENERATION_MAX_TOKENS = {"alpaca": 2048, "mt-bench": 1024, "flask": 2048, "gsm8k": 2048}
"""The reference code's answer lengths (GSM8K, not in the paper, as AlpacaEval)."""

JUDGES = {
    "alpaca": (1.0, 1),  # one token; logprobs carry the preference
    "mt-bench": (mt_bench.JUDGE_TEMPERATURE, mt_bench.JUDGE_MAX_TOKENS),
    "flask": (flask.JUDGE_TEMPERATURE, 1024),
}
"""Each judged benchmark's judge settings: (temperature, max tokens)."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``eval`` and its subcommands to the ``moa`` command."""
    evaluation = commands.add_parser("eval", help="run the paper's benchmarks and analyses")
    sub = evaluation.add_subparsers(dest="eval_command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        help=f"folder with alpaca_eval/, mt_bench/, flask/, gsm8k/ (or ${DATA_DIR_ENV})",
    )
    common.add_argument("--out", default="moa-eval", help="results folder (default moa-eval)")
    common.add_argument("--limit", type=int, help="only the first N items")
    common.add_argument("--concurrency", type=int, default=4, help="items in flight")
    common.add_argument(
        "--max-tokens",
        type=int,
        help="longest answer per call (default: the paper's per benchmark)",
    )
    common.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    common.add_argument(
        "--judge",
        default=LOCAL_MODEL,
        help=f"judge model (default {LOCAL_MODEL}: it tests the pipeline, not quality)",
    )
    common.add_argument(
        "--judge-max-tokens", type=int, help="longest judge reply (default: the benchmark's)"
    )
    common.add_argument("--cache", help="LLM cache file (default OUT/cache.sqlite)")
    common.add_argument("--no-cache", action="store_true", help="do not cache generations")
    common.add_argument(
        "--prices", help="JSON file: model -> [US$ per 1M input tokens, per 1M output tokens]"
    )

    for bench in BENCHMARKS:
        run = sub.add_parser(bench, parents=[common], help=f"run {bench} for one model")
        run.add_argument(
            "--model", default=LOCAL_MOA, help=f"model or preset (default {LOCAL_MOA})"
        )
        run.add_argument("--name", help="run name (default: from --model)")
        run.set_defaults(handler=_run_benchmark, bench=bench)

    grid = sub.add_parser("ablation", parents=[common], help="the paper's analyses as a grid")
    grid.add_argument("--bench", choices=list(BENCHMARKS), default="gsm8k")
    grid.add_argument(
        "--proposer", action="append", help="a proposer (repeat); default local-model"
    )
    grid.add_argument("--aggregator", help="the aggregator (default: the first proposer)")
    grid.add_argument("--layers", type=int, default=2)
    grid.add_argument("--axes", default=",".join(ablation.AXES), help="comma-separated axes")
    grid.add_argument("--proposer-counts", default="1,2,3,6")
    grid.add_argument("--name", default="ablation")
    grid.set_defaults(handler=_run_ablation)

    score = sub.add_parser(
        "score-alpaca", help="score an alpaca_eval annotations file (win rates, LC win rate)"
    )
    score.add_argument("annotations", help="annotations.json in alpaca_eval's format")
    score.add_argument(
        "--instruction-difficulty",
        help="CSV with instruction,difficulty columns: enables length_controlled_v1 terms",
    )
    score.add_argument("--json", action="store_true", help="print JSON only")
    score.set_defaults(handler=_score_alpaca)

    show = sub.add_parser("report", help="the paper-style table of every run in a folder")
    show.add_argument("folder")
    show.set_defaults(handler=_report)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _prices(path: str | None) -> Prices:
    if path is None:
        return {}
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        return {model: (float(pair[0]), float(pair[1])) for model, pair in raw.items()}
    except (TypeError, ValueError, IndexError, KeyError) as error:
        msg = f"{path}: prices must map model names to [input, output] US$ per 1M tokens"
        raise ValueError(msg) from error


def _setup(args: argparse.Namespace) -> None:
    if not args.no_cache:
        set_llm_cache(SQLiteCache(args.cache or Path(args.out) / "cache.sqlite"))


def _model(spec: str, bench: str, args: argparse.Namespace) -> BaseChatModel:
    max_tokens = args.max_tokens or GENERATION_MAX_TOKENS[bench]
    return model_from_spec(spec, max_tokens=max_tokens, temperature=args.temperature)


def _runner(
    bench: str, args: argparse.Namespace
) -> Callable[[BaseChatModel, Path], Coroutine[Any, Any, dict[str, Any]]]:
    folder = data_dir(args.data_dir)
    run: Callable[..., Coroutine[Any, Any, dict[str, Any]]]
    if bench in JUDGES:
        temperature, max_tokens = JUDGES[bench]
        judge = model_from_spec(
            args.judge, max_tokens=args.judge_max_tokens or max_tokens, temperature=temperature
        )
        runs = {"alpaca": alpaca.run, "mt-bench": mt_bench.run, "flask": flask.run}
        run = partial(runs[bench], judge=judge)
    else:
        run = gsm8k.run
    return partial(
        _with_metrics_file, run, data_dir=folder, limit=args.limit, concurrency=args.concurrency
    )


async def _with_metrics_file(
    run: Callable[..., Coroutine[Any, Any, dict[str, Any]]],
    model: BaseChatModel,
    out_dir: Path,
    **kwargs: Any,
) -> dict[str, Any]:
    metrics = await run(model, kwargs.pop("data_dir"), out_dir, **kwargs)
    report.write_metrics(out_dir, metrics)
    return metrics


def _run_benchmark(args: argparse.Namespace) -> int:
    _setup(args)
    out_dir = Path(args.out) / (args.name or _slug(args.model)) / BENCHMARKS[args.bench]
    runner = _runner(args.bench, args)
    metrics = asyncio.run(runner(_model(args.model, args.bench, args), out_dir))
    headline = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    print(json.dumps(headline, indent=2))
    print(f"results in {out_dir}")
    return 0


def _run_ablation(args: argparse.Namespace) -> int:
    _setup(args)
    runner = _runner(args.bench, args)
    specs = args.proposer or [LOCAL_MODEL]
    proposers = [_model(spec, args.bench, args) for spec in specs]
    aggregator = _model(args.aggregator, args.bench, args) if args.aggregator else proposers[0]
    configurations = ablation.grid(
        proposers,
        aggregator,
        layers=args.layers,
        axes=[a.strip() for a in args.axes.split(",") if a.strip()],
        proposer_counts=[int(n) for n in args.proposer_counts.split(",")],
    )
    out_dir = Path(args.out) / args.name / BENCHMARKS[args.bench]
    rows = asyncio.run(
        ablation.run_grid(
            configurations,
            runner,
            out_dir,
            quality_key=QUALITY[args.bench],
            prices=_prices(args.prices),
        )
    )
    print(ablation.markdown(rows, QUALITY[args.bench]), end="")
    print(f"table in {out_dir / 'ablation.md'} and {out_dir / 'ablation.csv'}")
    return 0


def _score_alpaca(args: argparse.Namespace) -> int:
    annotations = read_json(Path(args.annotations))
    if not isinstance(annotations, list):
        msg = f"{args.annotations}: expected a JSON list of alpaca_eval annotations"
        raise ValueError(msg)  # noqa: TRY004 - bad input, reported as such
    missing = {"instruction", "output_1", "output_2", "preference"} - set(
        annotations[0] if annotations else {}
    )
    if not annotations or missing:
        msg = f"{args.annotations}: annotations need {sorted(missing) or 'rows'}"
        raise ValueError(msg)
    difficulty = None
    if args.instruction_difficulty:
        with Path(args.instruction_difficulty).open(newline="", encoding="utf-8") as table:
            difficulty = {
                row["instruction"]: float(row["difficulty"]) for row in csv.DictReader(table)
            }
    metrics = alpaca.score_annotations(annotations, difficulty)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for key, value in metrics.items():
            print(f"{key}: {value}")
    return 0


def _report(args: argparse.Namespace) -> int:
    print(report.render(Path(args.folder)), end="")
    return 0
