"""The paper's analyses, and the strategies since, as a grid of configurations on one benchmark.

Rows: MoA itself; the LLM-ranker; n proposers; single- vs multiple-proposer;
each model as aggregator; the number of layers; each model alone (the paper's
axes); and every strategy, with and without early stop and shuffled
references (``strategies``). Every row records quality, tokens, cost and
latency, and the table is written as markdown and CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from langchain_core.language_models import BaseChatModel

from langchain_moa.chat_models import ChatMoA
from langchain_moa.costs import Rates
from langchain_moa.eval.generation import total_cost_usd
from langchain_moa.eval.store import progress_bar, write_atomic
from langchain_moa.stacks import model_label
from langchain_moa.stacks.spec import AgreementMethod
from langchain_moa.stacks.strategy import draws

PAPER_AXES = ("ranker", "proposers", "single", "aggregators", "layers", "baselines")
"""The paper's analyses: the grid's default."""
AXES = (*PAPER_AXES, "strategies")
"""Every axis of the grid, in the order rows are written."""

STRATEGY_ROWS = ("synthesize", "rank", "rank-then-synthesize", "self-moa", "self-moa-seq")
"""The strategies the ``strategies`` axis compares."""

Runner = Callable[[BaseChatModel, Path], Coroutine[Any, Any, dict[str, Any]]]
"""Runs one benchmark for a model into a folder; returns its metrics."""


@dataclass(frozen=True)
class Configuration:
    """One row of the grid."""

    name: str
    axis: str
    model: BaseChatModel


def _take(proposers: Sequence[BaseChatModel], count: int) -> list[BaseChatModel]:
    """The first ``count`` proposers; models reused past the list are fresh draws."""
    by_model = {id(m): iter(draws(m, count)) for m in proposers}
    return [next(by_model[id(proposers[i % len(proposers)])]) for i in range(count)]


def grid(
    proposers: Sequence[BaseChatModel],
    aggregator: BaseChatModel,
    *,
    layers: int = 2,
    axes: Sequence[str] = PAPER_AXES,
    proposer_counts: Sequence[int] = (1, 2, 3, 6),
    layer_counts: Sequence[int] = (2, 3),
    agreement: AgreementMethod = "embedding",
    strategies: Sequence[str] = STRATEGY_ROWS,
    strategy_proposers: int = 3,
) -> list[Configuration]:
    """The configurations of the paper's analyses (and the strategies) around one MoA set-up.

    The ``strategies`` axis runs each of ``strategies`` as it is, with early stop
    (testing agreement by ``agreement``: the benchmark's) and with shuffled
    references, with ``strategy_proposers`` proposers per layer (the first ones,
    then fresh draws: one ``--proposer`` gives three samples of it). Self-MoA-Seq
    reads half the samples at a time, so that it makes more than one step. Early
    stop needs two proposer layers (``layers >= 3``).

    Raises:
        ValueError: an unknown axis, or no proposers.
    """
    unknown = sorted(set(axes) - set(AXES))
    if unknown:
        msg = f"unknown ablation axes {unknown}; choose from {list(AXES)}"
        raise ValueError(msg)
    if not proposers:
        msg = "the ablation grid needs at least one proposer"
        raise ValueError(msg)
    if "strategies" in axes and layers < 3:  # noqa: PLR2004 - two proposer layers
        msg = (
            "the strategies axis needs layers >= 3 (--layers 3): its early-stop rows end "
            "the stack before its last proposer layer, and with one there is none to skip"
        )
        raise ValueError(msg)
    n = len(proposers)

    def moa(layer_models: Sequence[BaseChatModel], final: BaseChatModel, **kw: Any) -> ChatMoA:
        return ChatMoA(
            proposers=list(layer_models), aggregator=final, layers=kw.pop("layers", layers), **kw
        )

    rows = [Configuration("moa", "moa", moa(proposers, aggregator))]
    mixed = _take(proposers, strategy_proposers)
    distinct = list({id(m): m for m in [*proposers, aggregator]}.values())
    builders: dict[str, Callable[[], list[Configuration]]] = {
        "ranker": lambda: [
            Configuration(
                "llm-ranker", "ranker", moa(proposers, aggregator, layers=2, aggregation="rank")
            )
        ],
        "proposers": lambda: [
            Configuration(f"n={k}", "proposers", moa(_take(proposers, k), aggregator))
            for k in proposer_counts
        ],
        "single": lambda: [
            Configuration(
                f"single-proposer n={n}", "single", moa(draws(proposers[0], n), aggregator)
            ),
            Configuration(f"multiple-proposer n={n}", "single", moa(proposers, aggregator)),
        ],
        "aggregators": lambda: [
            Configuration(f"aggregator={model_label(m)}", "aggregators", moa(proposers, m))
            for m in distinct
        ],
        "layers": lambda: [
            Configuration(f"layers={k}", "layers", moa(proposers, aggregator, layers=k))
            for k in layer_counts
        ],
        "baselines": lambda: [
            Configuration(f"alone: {model_label(m)}", "baselines", m) for m in distinct
        ],
        "strategies": lambda: [
            Configuration(f"{name}{label}", "strategies", moa(mixed, aggregator, **options))
            for name in strategies
            for label, variant in (
                ("", {}),
                (", early stop", {"early_stop": {"method": agreement}}),
                (", shuffled", {"reference_order": "shuffle"}),
            )
            for options in [{"strategy": _strategy(name, strategy_proposers), **variant}]
        ],
    }
    for axis in AXES:
        if axis in axes:
            rows.extend(builders[axis]())
    return rows


def _strategy(name: str, proposers: int) -> dict[str, Any]:
    if name == "self-moa-seq":
        return {"name": name, "window": max(2, -(-proposers // 2))}
    return {"name": name}


COLUMNS = (
    "configuration",
    "axis",
    "quality",
    "input_tokens",
    "output_tokens",
    "calls",
    "cost_usd",
    "latency_s",
)


def row(
    configuration: Configuration, metrics: Mapping[str, Any], quality_key: str, rates: Rates
) -> dict[str, Any]:
    """One table row from a configuration's benchmark metrics, its cost at ``rates``' prices."""
    usage = metrics["generation"]["usage"]
    return {
        "configuration": configuration.name,
        "axis": configuration.axis,
        "quality": metrics.get(quality_key),
        "input_tokens": sum(u["input_tokens"] for u in usage.values()),
        "output_tokens": sum(u["output_tokens"] for u in usage.values()),
        "calls": sum(u["calls"] for u in usage.values()),
        "cost_usd": total_cost_usd(usage, rates),
        "latency_s": metrics["generation"]["latency_s_mean"],
    }


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(rows: Sequence[Mapping[str, Any]], quality_name: str) -> str:
    """The table for people; ``quality`` is headed with the benchmark's metric."""
    header = [quality_name if c == "quality" else c for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def markdown_of(results: Mapping[str, Any]) -> str:
    """The table of an ``ablation.json``."""
    return markdown(results["rows"], results["quality"])


async def run_grid(
    configurations: Sequence[Configuration],
    runner: Runner,
    out_dir: Path,
    *,
    quality_key: str,
    rates: Rates,
    progress_file: TextIO | None = None,
    progress: bool | None = None,
    about: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run every configuration (each resumable in its own folder); write the table.

    ``about`` (the grid's settings and provenance) is written into ``ablation.json``
    beside the rows, so a published table can say which run it comes from.

    A progress bar counts configurations (on a terminal only, unless ``progress`` says
    otherwise; drawn on ``progress_file``, default stderr), each run's own bar below it.
    Files in ``out_dir``: one folder per configuration, ``ablation.md``,
    ``ablation.csv`` and ``ablation.json``.
    """
    rows = []
    bar = progress_bar(
        "ablation", len(configurations), file=progress_file,
        disable=None if progress is None else not progress,
    )  # fmt: skip
    with bar:
        for configuration in configurations:
            bar.set_postfix(failed=0, configuration=configuration.name)
            name = configuration.name.replace(" ", "_").replace(":", "")
            folder = out_dir / name.replace("/", "-")
            try:
                metrics = await runner(configuration.model, folder)
            except Exception:
                # A failed configuration stops the grid (its error names the failed items);
                # a rerun resumes it.
                bar.set_postfix(failed=1, configuration=configuration.name)
                raise
            rows.append(row(configuration, metrics, quality_key, rates))
            bar.update()
    write_table(rows, out_dir, quality_key, about)
    return rows


def write_table(
    rows: Sequence[Mapping[str, Any]],
    out_dir: Path,
    quality_key: str,
    about: Mapping[str, Any] | None = None,
) -> None:
    """``ablation.md``, ``ablation.csv`` and ``ablation.json`` in ``out_dir``.

    ``ablation.json`` holds ``about``'s keys, ``quality`` (the metric's key) and ``rows``:
    what `markdown_of` renders again.

    Each is written atomically (a kill leaves the old file or the new one); a rerun, which
    resumes every configuration from its records, writes them again.
    """
    write_atomic(out_dir / "ablation.md", markdown(rows, quality_key))
    results = {**(about or {}), "quality": quality_key, "rows": list(rows)}
    write_atomic(out_dir / "ablation.json", json.dumps(results, indent=2))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out_dir / "ablation.csv", table.getvalue())
