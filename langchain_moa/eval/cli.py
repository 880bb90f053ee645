"""``moa eval ...``: run the paper's benchmarks, ablations and reports."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable
from functools import partial, wraps
from pathlib import Path
from typing import Any

from langchain_core.globals import set_llm_cache
from langchain_core.language_models import BaseChatModel

from langchain_moa.bench.provenance import provenance
from langchain_moa.costs import Parameters, Prices, Rates
from langchain_moa.eval import ablation, registry, report
from langchain_moa.eval.benchmark import Benchmark, RunFunction
from langchain_moa.eval.cache import SQLiteCache
from langchain_moa.eval.data import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    DownloadError,
    data_folder,
    locate,
    read_json,
)
from langchain_moa.eval.extras import MissingExtraError, require
from langchain_moa.model_names import model_from_spec
from langchain_moa.stacks import LOCAL_MOA, LOCAL_MODEL

Handler = Callable[[argparse.Namespace], int]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``eval`` and its subcommands to the ``moa`` command."""
    evaluation = commands.add_parser("eval", help="run the paper's benchmarks and analyses")
    sub = evaluation.add_subparsers(dest="eval_command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        help=f"folder with alpaca_eval/, mt_bench/, flask/, gsm8k/ (or ${DATA_DIR_ENV}) that "
        "replaces the packaged data and FLASK's download (kept in "
        f"${CACHE_DIR_ENV}, default ~/.cache/langchain-moa)",
    )
    common.add_argument("--out", default="moa-eval", help="results folder (default moa-eval)")
    common.add_argument("--limit", type=int, help="only the first N items")
    common.add_argument("--concurrency", type=int, default=4, help="items in flight")
    common.add_argument(
        "--max-tokens",
        type=int,
        help="longest answer per call (default: the paper's per benchmark)",
    )
    common.add_argument(
        "--temperature", type=float, help="sampling temperature (default: the benchmark's, 0.7)"
    )
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
        "--prices",
        help="JSON file: model -> [US$ per 1M input tokens, per 1M output tokens], added to "
        "or replacing the default list prices, for the ablation table's cost",
    )

    for bench in registry.BENCHMARKS:
        run = sub.add_parser(bench.name, parents=[common], help=f"run {bench.title} for one model")
        run.add_argument(
            "--model", default=LOCAL_MOA, help=f"model or preset (default {LOCAL_MOA})"
        )
        run.add_argument("--name", help="run name (default: from --model)")
        if bench.subsets:
            run.add_argument(
                "--subset",
                choices=[subset.name for subset in bench.subsets],
                help="run only part of the items, into OUT/RUN/"
                f"{bench.folder}_SUBSET: "
                + "; ".join(f"{s.name}: {s.description}" for s in bench.subsets),
            )
        run.set_defaults(handler=_handled(_run_benchmark), bench=bench.name)

    grid = sub.add_parser("ablation", parents=[common], help="the paper's analyses as a grid")
    grid.add_argument("--bench", choices=[b.name for b in registry.BENCHMARKS], default="gsm8k")
    grid.add_argument(
        "--proposer", action="append", help="a proposer (repeat); default local-model"
    )
    grid.add_argument("--aggregator", help="the aggregator (default: the first proposer)")
    grid.add_argument("--layers", type=int, default=2)
    grid.add_argument(
        "--axes",
        default=",".join(ablation.PAPER_AXES),
        help=f"comma-separated axes of {', '.join(ablation.AXES)} (default: the paper's; "
        "strategies compares every strategy, with early stop and shuffled references)",
    )
    grid.add_argument("--proposer-counts", default="1,2,3,6")
    grid.add_argument("--name", default="ablation")
    grid.set_defaults(handler=_handled(_run_ablation))

    score = sub.add_parser(
        "score-alpaca",
        help="score an alpaca_eval annotations file (win rates, LC win rate: "
        "length_controlled_v1 with alpaca_eval's hub files, else length_controlled_minimal)",
    )
    score.add_argument("annotations", help="annotations.json in alpaca_eval's format")
    score.add_argument(
        "--gamed-baselines",
        metavar="DF_GAMED_CSV",
        help="alpaca_eval's df_gamed.csv, in place of the Hugging Face hub's; with it the LC "
        "win rate is length_controlled_v1",
    )
    score.add_argument(
        "--instruction-difficulty",
        metavar="CSV",
        help="alpaca_eval's instruction_difficulty.csv (index or instruction, "
        "instruction_difficulty), in place of the hub's; alone (without --gamed-baselines) "
        "the LC win rate is length_controlled_noreg",
    )
    score.add_argument("--json", action="store_true", help="print JSON only")
    score.set_defaults(handler=_handled(_score_alpaca))

    show = sub.add_parser(
        "report",
        help="the paper-style table of every run in a folder, and its budget analysis "
        "(quality against cost and TFLOPs per query, the Pareto frontier, FOLDER/pareto.png)",
    )
    show.add_argument("folder")
    show.add_argument(
        "--metric",
        choices=report.metric_choices(),
        help="the budget analysis's quality (default: AlpacaEval's LC win rate where runs "
        "have it, else the first column they have)",
    )
    show.add_argument(
        "--prices",
        help="JSON file: model -> [US$ per 1M input tokens, per 1M output tokens], added to "
        "or replacing the default list prices (langchain_moa.costs)",
    )
    show.add_argument(
        "--parameters",
        help="JSON file: model -> billions of active parameters, added to or replacing the "
        "default sizes; a single model's run is re-sized, a MoA's TFLOPs are its eval's",
    )
    show.set_defaults(handler=_handled(_report))


def _handled(handler: Handler) -> Handler:
    """``handler``, with a missing extra or a failed download said in one line, not a trace."""

    @wraps(handler)
    def handle(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (MissingExtraError, DownloadError) as error:
            # moa's own errors (ValueError, FileNotFoundError) get the same line from moa.
            print(f"moa: error: {error}", file=sys.stderr)
            raise SystemExit(2) from error

    return handle


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _prices(path: str | None) -> Prices:
    if path is None:
        return {}
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        return {model: (float(pair[0]), float(pair[1])) for model, pair in raw.items()}
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as error:
        msg = f"{path}: prices must map model names to [input, output] US$ per 1M tokens"
        raise ValueError(msg) from error


def _parameters(path: str | None) -> Parameters:
    if path is None:
        return {}
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        return {model: float(billions) for model, billions in raw.items()}
    except (TypeError, ValueError, AttributeError) as error:
        msg = f"{path}: parameters must map model names to billions of active parameters"
        raise ValueError(msg) from error


def _setup(args: argparse.Namespace) -> None:
    if not args.no_cache:
        set_llm_cache(SQLiteCache(args.cache or Path(args.out) / "cache.sqlite"))


def _model(spec: str, bench: Benchmark, args: argparse.Namespace) -> BaseChatModel:
    max_tokens = args.max_tokens or bench.generation.max_tokens
    temperature = bench.generation.temperature if args.temperature is None else args.temperature
    return model_from_spec(spec, max_tokens=max_tokens, temperature=temperature)


def _runner(bench: Benchmark, args: argparse.Namespace) -> ablation.Runner:
    folder = data_folder(args.data_dir)
    # Only a benchmark's own command has --subset.
    subset = getattr(args, "subset", None)
    # Before any model starts: a missing extra (tqdm draws the progress bars) or data file,
    # or a failed download.
    require(*bench.requires, "tqdm", purpose=f"moa eval {bench.name}")
    for file in bench.files if subset is None else bench.subset(subset).files:
        locate(file, folder)
    run: RunFunction = bench.run if subset is None else partial(bench.run, subset=subset)
    if bench.judge is not None:
        judge = model_from_spec(
            args.judge,
            max_tokens=args.judge_max_tokens or bench.judge.max_tokens,
            temperature=bench.judge.temperature,
        )
        run = partial(run, judge=judge)
    return partial(
        _with_metrics_file, run, data_dir=folder, limit=args.limit, concurrency=args.concurrency
    )


async def _with_metrics_file(
    run: RunFunction,
    model: BaseChatModel,
    out_dir: Path,
    **kwargs: Any,
) -> dict[str, Any]:
    metrics = await run(model, kwargs.pop("data_dir"), out_dir, **kwargs)
    report.write_metrics(out_dir, metrics)
    return metrics


def _run_benchmark(args: argparse.Namespace) -> int:
    bench = registry.benchmark(args.bench)
    _setup(args)
    # A subset's records apart from the whole set's: both are resumed by item.
    folder = bench.results_folder(args.subset if bench.subsets else None)
    out_dir = Path(args.out) / (args.name or _slug(args.model)) / folder
    # A misspelt model is said before any data is looked for or downloaded.
    model = _model(args.model, bench, args)
    runner = _runner(bench, args)
    metrics = asyncio.run(runner(model, out_dir))
    headline = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    print(json.dumps(headline, indent=2))
    print(f"results in {out_dir}")
    return 0


def _grid_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What an ablation's figures depend on (not where it writes, nor secrets' files)."""
    keys = ("bench", "axes", "layers", "proposer", "aggregator", "proposer_counts", "limit",
            "max_tokens", "temperature", "concurrency")  # fmt: skip
    return {key: getattr(args, key) for key in keys}


def _run_ablation(args: argparse.Namespace) -> int:
    bench = registry.benchmark(args.bench)
    _setup(args)
    specs = args.proposer or [LOCAL_MODEL]
    proposers = [_model(spec, bench, args) for spec in specs]
    aggregator = _model(args.aggregator, bench, args) if args.aggregator else proposers[0]
    runner = _runner(bench, args)
    configurations = ablation.grid(
        proposers,
        aggregator,
        layers=args.layers,
        axes=[a.strip() for a in args.axes.split(",") if a.strip()],
        proposer_counts=[int(n) for n in args.proposer_counts.split(",")],
        agreement=bench.agreement,
    )
    out_dir = Path(args.out) / args.name / bench.folder
    about = {"settings": _grid_settings(args), "provenance": provenance()}
    rows = asyncio.run(
        ablation.run_grid(
            configurations,
            runner,
            out_dir,
            quality_key=bench.headline,
            rates=Rates.extended(prices=_prices(args.prices)),
            about=about,
        )
    )
    print(ablation.markdown(rows, bench.headline), end="")
    print(f"table in {out_dir / 'ablation.md'} and {out_dir / 'ablation.csv'}")
    return 0


def _score_alpaca(args: argparse.Namespace) -> int:
    require("numpy", "sklearn", purpose="moa eval score-alpaca")
    # Imported here: moa starts without the eval extra.
    from langchain_moa.eval.alpaca import evaluate, hub  # noqa: PLC0415

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
    if args.gamed_baselines or args.instruction_difficulty:
        instructions = [r["instruction"] for r in evaluate.load_reference_outputs()]
        try:
            files = hub.read_length_control_files(
                instructions,
                gamed=_path_or_none(args.gamed_baselines),
                difficulty=_path_or_none(args.instruction_difficulty),
            )
        except hub.HubFilesUnavailableError as error:
            raise ValueError(str(error)) from error
        metrics = evaluate.score_with_files(annotations, files)
    else:
        metrics = evaluate.score(annotations)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for key, value in metrics.items():
            # The LC win rate under its formula's name: which LC it is matters.
            name = str(metrics["formula"]) if key == "length_controlled_winrate" else key
            print(f"{name}: {value}")
    return 0


def _path_or_none(path: str | None) -> Path | None:
    return None if path is None else Path(path)


def _report(args: argparse.Namespace) -> int:
    rates = Rates.extended(prices=_prices(args.prices), parameters=_parameters(args.parameters))
    print(report.render(Path(args.folder), metric=args.metric, rates=rates), end="")
    return 0
