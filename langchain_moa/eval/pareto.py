"""The paper's budget analysis: quality against cost and TFLOPs per query, and its frontier.

As the MoA paper's Figure 5 (Wang et al., 2024): every evaluated stack is a point, quality
(by default AlpacaEval's LC win rate) against US$ per query and against TFLOPs per query
(`langchain_moa.costs`' latency proxy). A stack is on the Pareto frontier when no other
stack has quality ``>=`` and cost ``<=`` with one of them strictly better.

Where each number comes from:

* quality: the chosen column's metric in the run's ``metrics.json`` (`report.columns`,
  which `report.render` hands in);
* US$ per query: that benchmark's ``generation.usage`` totals priced at the report's
  rates (`generation.total_cost_usd`), divided by ``generation.items``: cost is linear in
  tokens, so the totals give it exactly and ``--prices`` re-prices a saved run;
* TFLOPs per query: a layer costs its largest call, which per-model totals cannot tell,
  so it is ``generation.tflops_per_query`` as the run stored it; a single model's run
  (one call per query) is recomputed from its totals, so ``--parameters`` re-sizes it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_moa.costs import Rates
from langchain_moa.eval.extras import require
from langchain_moa.eval.generation import as_usage, total_cost_usd
from langchain_moa.eval.store import write_atomic

PLOT_FILE = "pareto.png"
DEFAULT_METRIC = "alpaca_eval.length_controlled_winrate"
"""The paper's quality axis: AlpacaEval 2.0's LC win rate."""


@dataclass(frozen=True)
class Column:
    """A report column (`report.columns`) as the runs name it (`report.named_heading`)."""

    heading: str
    folder: str
    key: str
    per_run: tuple[str, ...] = ()
    """Fields each quality cell names, where runs differ on them (the LC formula)."""

    @property
    def name(self) -> str:
        """Its ``--metric`` value, ``FOLDER.KEY``."""
        return f"{self.folder}.{self.key}"


@dataclass(frozen=True)
class Point:
    """One run in the budget analysis; an unknown cost or TFLOPs is None, never 0."""

    run: str
    quality: float
    cost_usd: float | None
    tflops: float | None
    note: str = ""
    """What the quality cell adds (a per-run formula), or nothing."""


@dataclass(frozen=True)
class Budget:
    """The analysis of one folder: its points and the runs left out of each panel, with why."""

    heading: str
    points: list[Point]
    left_out: dict[str, str]
    """Runs with no quality for the metric: run -> why."""
    no_cost: dict[str, str]
    """Runs with quality but unknown US$ per query: run -> why."""
    no_tflops: dict[str, str]
    """Runs with quality but unknown TFLOPs per query: run -> why."""


def choose_metric(
    runs: Mapping[str, Mapping[str, Mapping[str, Any]]],
    columns: Sequence[Column],
    metric: str | None,
) -> Column:
    """The column ``metric`` (``FOLDER.KEY``) names.

    By default the LC win rate where a run has it, else the first column a run has a
    number for.

    Raises:
        ValueError: ``metric`` is no column's, or no run has a number for any column.
    """
    by_name = {column.name: column for column in columns}
    if metric is not None:
        if metric not in by_name:
            msg = f"unknown metric {metric!r}: choose from {', '.join(by_name)}"
            raise ValueError(msg)
        return by_name[metric]
    for name in [DEFAULT_METRIC, *by_name]:
        column = by_name.get(name)
        if column is not None and any(
            _number(b.get(column.folder, {}).get(column.key)) is not None for b in runs.values()
        ):
            return column
    msg = "no run has a number for any of the report's columns"
    raise ValueError(msg)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def cost_per_query(generation: Mapping[str, Any], rates: Rates) -> tuple[float | None, str]:
    """US$ per query: ``total_cost_usd(generation.usage) / generation.items``.

    Returns:
        The cost, or None with why it is unknown (else an empty why).
    """
    usage, items = generation.get("usage") or {}, generation.get("items") or 0
    if not items:
        return None, "no generations recorded"
    for model, tokens in usage.items():
        if tokens.get("calls_without_usage", 0):
            return None, f"{tokens['calls_without_usage']} calls of {model} reported no usage"
        if rates.price(model) is None:
            return None, f"no price for {model} (pass --prices)"
    total = total_cost_usd(usage, rates)
    return (None, "unknown cost") if total is None else (total / items, "")


def tflops_per_query(generation: Mapping[str, Any], rates: Rates) -> tuple[float | None, str]:
    """TFLOPs per query: recomputed for a single model's run, else as the run stored it.

    A run that made one call per query of one model is that model's: its TFLOPs per
    query are ``2 x active parameters x its tokens / items`` at ``rates``. Any other's
    needs each query's layers (`generation.query_tflops`), so the stored figure is used,
    unless it was computed with a model size the report's rates now differ on.

    Returns:
        The TFLOPs, or None with why they are unknown (else an empty why).
    """
    usage, items = generation.get("usage") or {}, generation.get("items") or 0
    if not items:
        return None, "no generations recorded"
    single = _single_model_tflops(usage, items, rates)
    if single is not None:
        return single
    if "tflops_per_query" not in generation:
        return None, "its metrics predate TFLOPs per query: rerun its `moa eval` (resumed)"
    stored = generation.get("rates") or {}
    for model in usage:
        then = (stored.get(model) or {}).get("active_parameters_b")
        now = rates.active_parameters(model)
        if then is None:
            return None, f"no size for {model} when it was evaluated"
        if now != then:
            size = "an unknown size" if now is None else f"{now:g}B"
            return None, f"evaluated with {model} at {then:g}B active parameters, not {size}"
    value = _number(generation["tflops_per_query"])
    return (None, "a call without usage") if value is None else (value, "")


def _single_model_tflops(
    usage: Mapping[str, Mapping[str, int]], items: int, rates: Rates
) -> tuple[float | None, str] | None:
    """A single model's run's TFLOPs per query from its totals; None for any other run."""
    if len(usage) != 1:
        return None
    ((model, tokens),) = usage.items()
    if tokens["calls"] != items or tokens.get("calls_without_usage", 0):
        return None
    total = rates.tflops(model, as_usage(tokens))
    if total is None:
        return None, f"no size for {model} (pass --parameters)"
    return total / items, ""


def budget(
    runs: Mapping[str, Mapping[str, Mapping[str, Any]]], column: Column, rates: Rates
) -> Budget:
    """Every run's point for ``column``'s quality, and the runs left out, with why."""
    folder, key = column.folder, column.key
    points, left_out, no_cost, no_tflops = [], {}, {}, {}
    for run, benchmarks in runs.items():
        metrics = benchmarks.get(folder, {})
        quality = _number(metrics.get(key))
        if quality is None:
            left_out[run] = f"no {folder} {key}"
            continue
        generation = metrics.get("generation") or {}
        cost, why_cost = cost_per_query(generation, rates)
        tflops, why_tflops = tflops_per_query(generation, rates)
        if cost is None:
            no_cost[run] = why_cost
        if tflops is None:
            no_tflops[run] = why_tflops
        note = "".join(f" ({metrics.get(field, '?')})" for field in column.per_run)
        points.append(Point(run, quality, cost, tflops, note))
    return Budget(column.heading, points, left_out, no_cost, no_tflops)


def frontier(points: Sequence[Point], cost: Callable[[Point], float | None]) -> list[Point]:
    """The points no other dominates, cheapest first; points of unknown ``cost`` take no part.

    ``a`` dominates ``b`` when ``a.quality >= b.quality`` and ``cost(a) <= cost(b)`` with
    one strictly better: two runs alike in both are both on the frontier.
    """
    known = [(p, c) for p in points if (c := cost(p)) is not None]
    on = [
        (p, c)
        for p, c in known
        if not any(
            q.quality >= p.quality and d <= c and (q.quality > p.quality or d < c) for q, d in known
        )
    ]
    return [p for p, _ in sorted(on, key=lambda pc: (pc[1], -pc[0].quality))]


def by_cost(point: Point) -> float | None:
    """A point's US$ per query."""
    return point.cost_usd


def by_tflops(point: Point) -> float | None:
    """A point's TFLOPs per query."""
    return point.tflops


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    # Four significant digits, without an exponent for thousands of TFLOPs.
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"  # noqa: PLR2004


def frontier_table(analysis: Budget) -> str:
    """The markdown table: each run's quality, US$ and TFLOPs per query, and its frontiers.

    Cheapest first, unknown costs last.
    """
    on_cost = {p.run for p in frontier(analysis.points, by_cost)}
    on_tflops = {p.run for p in frontier(analysis.points, by_tflops)}
    header = ["run", analysis.heading, "US$ per query", "TFLOPs per query", "on the frontier of"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ordered = sorted(
        analysis.points,
        key=lambda p: (p.cost_usd is None, p.cost_usd or 0.0, -p.quality),
    )
    for point in ordered:
        on = [
            name for name, runs in (("cost", on_cost), ("TFLOPs", on_tflops)) if point.run in runs
        ]
        cells = [
            point.run,
            f"{point.quality:.2f}{point.note}",
            _cell(point.cost_usd),
            _cell(point.tflops),
            ", ".join(on) or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(analysis: Budget, path: Path) -> Path:
    """Draw Figure 5's two panels: quality against US$ and against TFLOPs per query.

    Every point is labelled with its run; each panel's frontier is a step line (the best
    quality a budget buys).

    Returns:
        ``path``, the PNG written.

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    require("matplotlib", purpose="the budget analysis's Pareto plot")
    # Imported here: moa starts without the eval extra.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    # A bare Figure on the Agg canvas: no pyplot, so no global backend switch.
    figure = Figure(figsize=(12, 5))
    FigureCanvasAgg(figure)
    panels = (("US$ per query", by_cost), ("TFLOPs per query", by_tflops))
    for i, (label, cost) in enumerate(panels):
        axes: Any = figure.add_subplot(1, 2, i + 1)
        known = [(p, c) for p in analysis.points if (c := cost(p)) is not None]
        if not known:
            axes.text(0.5, 0.5, f"no run with known {label}", ha="center", transform=axes.transAxes)
        axes.scatter([c for _, c in known], [p.quality for p, _ in known], zorder=3)
        for point, c in known:
            axes.annotate(
                point.run, (c, point.quality), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        best = frontier(analysis.points, cost)
        axes.plot(
            [cost(p) for p in best],
            [p.quality for p in best],
            drawstyle="steps-post",
            color="tab:red",
            label="Pareto frontier",
        )
        axes.set_xlabel(label)
        axes.set_ylabel(analysis.heading)
        axes.grid(visible=True, alpha=0.3)
        axes.legend(loc="lower right")
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=150, bbox_inches="tight")
    # Whole or not at all: a kill mid-write leaves no broken PNG (a rerun draws it again).
    return write_atomic(path, image.getvalue())


def report_section(
    runs: Mapping[str, Mapping[str, Mapping[str, Any]]],
    folder: Path,
    columns: Sequence[Column],
    *,
    metric: str | None = None,
    rates: Rates | None = None,
) -> str:
    """The report's budget analysis: the frontier table, ``FOLDER/pareto.png``, what was left out.

    Or why there is no plot: fewer than two runs with quality and a cost or TFLOPs.
    """
    rates = rates or Rates()
    try:
        column = choose_metric(runs, columns, metric)
    except ValueError as error:
        if metric is not None:
            raise
        return f"\nBudget analysis: no plot: {error}\n"
    analysis = budget(runs, column, rates)
    plotted = [p for p in analysis.points if p.cost_usd is not None or p.tflops is not None]
    text = f"\nBudget analysis ({analysis.heading} against cost and TFLOPs per query):\n"
    if len(plotted) < 2:  # noqa: PLR2004 - a frontier needs two runs to compare
        text += (
            f"no plot: {len(plotted)} run(s) with {analysis.heading} and a known cost or TFLOPs\n"
        )
    else:
        text += frontier_table(analysis)
        text += f"\nplot: {plot(analysis, folder / PLOT_FILE)}\n"
    for title, runs_why in (
        ("left out", analysis.left_out),
        ("unknown US$ per query", analysis.no_cost),
        ("unknown TFLOPs per query", analysis.no_tflops),
    ):
        text += "".join(f"{title}: {run}: {why}\n" for run, why in runs_why.items())
    return text
