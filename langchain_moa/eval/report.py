"""Results on disk, and the paper-style table over every run in a folder."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_moa.costs import Rates
from langchain_moa.eval import pareto, registry
from langchain_moa.eval.store import write_atomic

METRICS_FILE = "metrics.json"


def columns() -> list[tuple[str, str, str]]:
    """The table's columns, (heading, benchmark folder, metric key), in the paper's order."""
    return [(heading, b.folder, key) for b in registry.BENCHMARKS for heading, key in b.columns]


def metric_choices() -> list[str]:
    """The values of ``moa eval report --metric``: ``FOLDER.KEY`` of every column."""
    return [f"{folder}.{key}" for _, folder, key in columns()]


def write_metrics(out_dir: Path, metrics: Mapping[str, Any]) -> Path:
    """Save a benchmark run's metrics beside its records.

    Atomically: a kill leaves the old file or the new one, and a rerun writes it again.
    """
    return write_atomic(out_dir / METRICS_FILE, json.dumps(metrics, indent=2, ensure_ascii=False))


def collect(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{run: {benchmark: metrics}}`` for every ``RUN/BENCHMARK/metrics.json``.

    Each as its benchmark's ``rescore`` gives it, where it has one.

    A subset's results (``RUN/flask_hard``) are the run ``RUN (hard)``'s, so that they get a
    row of their own and never mix with the whole set's.

    Raises:
        FileNotFoundError: the folder does not exist or holds no results.
    """
    if not folder.is_dir():
        msg = f"results folder not found: {folder}"
        raise FileNotFoundError(msg)
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    # Results folder -> (benchmark folder, subset or None).
    folders: dict[str, tuple[str, str | None]] = {
        b.folder: (b.folder, None) for b in registry.BENCHMARKS
    }
    folders |= {
        b.results_folder(s.name): (b.folder, s.name) for b in registry.BENCHMARKS for s in b.subsets
    }
    rescorers = {b.folder: b.rescore for b in registry.BENCHMARKS}
    for path in sorted(folder.glob(f"**/{METRICS_FILE}")):
        if path.parent.name in folders:
            benchmark, subset = folders[path.parent.name]
            run = path.parent.parent.name if path.parent.parent != folder.parent else folder.name
            run = run if subset is None else f"{run} ({subset})"
            metrics = json.loads(path.read_text(encoding="utf-8"))
            rescore = rescorers.get(benchmark)
            if rescore is not None:
                metrics = rescore(path.parent, metrics)
            runs.setdefault(run, {})[benchmark] = metrics
    if not runs:
        msg = f"no {METRICS_FILE} of any benchmark under {folder}"
        raise FileNotFoundError(msg)
    return runs


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


STANDARD_ERRORS = {"win_rate": "standard_error"}
"""Metrics whose uncertainty is a standard error (alpaca_eval's), by their error's key;
every other column's is the bootstrapped interval ``KEY_ci``, where its metrics have one."""


@dataclass(frozen=True)
class Estimate:
    """A metric with its uncertainty: a cell shows ``value (low to high)`` or ``value ± se``."""

    value: float
    interval: tuple[float, float] | None = None
    standard_error: float | None = None

    def __str__(self) -> str:
        """The cell's text."""
        if self.interval is not None:
            low, high = self.interval
            return f"{self.value:.2f} ({low:.2f}\N{EN DASH}{high:.2f})"
        if self.standard_error is not None:
            return f"{self.value:.2f} \N{PLUS-MINUS SIGN} {self.standard_error:.2f}"
        return f"{self.value:.2f}"


def with_uncertainty(
    runs: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """``runs`` with each column's value an `Estimate` where its metrics give its uncertainty.

    The uncertainty is the metric's ``KEY_ci`` (a bootstrapped 95% interval), else its
    standard error from `STANDARD_ERRORS`.
    """
    chosen = columns()
    updated = {run: {b: dict(m) for b, m in benchmarks.items()} for run, benchmarks in runs.items()}
    for benchmarks in updated.values():
        for _, folder, key in chosen:
            metrics = benchmarks.get(folder, {})
            value = metrics.get(key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            interval = metrics.get(f"{key}_ci")
            error = metrics.get(STANDARD_ERRORS.get(key, ""))
            if interval is not None:
                metrics[key] = Estimate(float(value), interval=(interval[0], interval[1]))
            elif isinstance(error, int | float):
                metrics[key] = Estimate(float(value), standard_error=float(error))
    return updated


def table(runs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """The paper-style markdown table: one row per run."""
    runs = with_uncertainty(runs)
    chosen = columns()
    named = [named_heading(heading, folder, runs) for heading, folder, _ in chosen]
    header = ["run", *(heading for heading, _ in named)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run, benchmarks in runs.items():
        cells = [
            _cell(benchmarks.get(folder, {}).get(key))
            + "".join(f" ({benchmarks[folder].get(field, '?')})" for field in per_run)
            if folder in benchmarks
            else _cell(None)
            for (_, folder, key), (_, per_run) in zip(chosen, named, strict=True)
        ]
        lines.append("| " + " | ".join([run, *cells]) + " |")
    return "\n".join(lines) + "\n"


def named_heading(
    heading: str, folder: str, runs: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> tuple[str, list[str]]:
    """``heading`` with each ``{field}`` replaced by the runs' value of that metric.

    A column whose meaning depends on how it was computed (AlpacaEval's LC win rate and
    its formula) says so in its heading. Where runs differ, the heading names the field
    and each cell gets its run's value: the fields returned.
    """
    per_run = []
    for field in re.findall(r"{(\w+)}", heading):
        values = {str(b[folder][field]) for b in runs.values() if field in b.get(folder, {})}
        if len(values) == 1:
            heading = heading.replace(f"{{{field}}}", values.pop())
        else:
            heading = heading.replace(f"{{{field}}}", f"({field} in each cell)")
            per_run.append(field)
    return heading, per_run


def named_columns(runs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[pareto.Column]:
    """Every column with its heading as ``runs`` name it (`named_heading`)."""
    named = []
    for heading, benchmark, key in columns():
        name, per_run = named_heading(heading, benchmark, runs)
        named.append(pareto.Column(name, benchmark, key, tuple(per_run)))
    return named


def render(folder: Path, *, metric: str | None = None, rates: Rates | None = None) -> str:
    """The report of every run under ``folder``, its budget analysis, and any ablation tables.

    The budget analysis (`langchain_moa.eval.pareto`) follows the table: ``metric``'s
    quality (``FOLDER.KEY``; by default the LC win rate) against cost and TFLOPs per
    query at ``rates`` (default: `langchain_moa.costs`' tables), and ``FOLDER/pareto.png``.
    Each benchmark may add its own part (FLASK: per-skill averages and a radar chart),
    writing its plots into ``folder`` and saying where.
    """
    runs = collect(folder)
    budget = pareto.report_section(runs, folder, named_columns(runs), metric=metric, rates=rates)
    parts = [table(runs), budget]
    for bench in registry.BENCHMARKS:
        if bench.report is not None:
            scored = {run: b[bench.folder] for run, b in runs.items() if bench.folder in b}
            parts.append(bench.report(scored, folder))
    parts += [
        f"\n{path.relative_to(folder)}:\n{path.read_text(encoding='utf-8')}"
        for path in sorted(folder.glob("**/ablation.md"))
    ]
    return "".join(parts)
