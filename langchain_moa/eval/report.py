"""Results on disk, and the paper-style table over every run in a folder."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_moa.eval.flask import radar_chart

METRICS_FILE = "metrics.json"

# (column, benchmark folder, metric key), in the paper's order.
COLUMNS = (
    ("AlpacaEval LC win", "alpaca_eval", "length_controlled_winrate"),
    ("AlpacaEval win", "alpaca_eval", "win_rate"),
    ("avg length", "alpaca_eval", "avg_length"),
    ("MT-Bench", "mt_bench", "overall"),
    ("FLASK avg", "flask", "average"),
    ("GSM8K acc", "gsm8k", "accuracy"),
)
BENCHMARK_FOLDERS = ("alpaca_eval", "mt_bench", "flask", "gsm8k")


def write_metrics(out_dir: Path, metrics: Mapping[str, Any]) -> Path:
    """Save a benchmark run's metrics beside its records."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / METRICS_FILE
    path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def collect(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{run: {benchmark: metrics}}`` for every ``RUN/BENCHMARK/metrics.json``.

    Raises:
        FileNotFoundError: the folder does not exist or holds no results.
    """
    if not folder.is_dir():
        msg = f"results folder not found: {folder}"
        raise FileNotFoundError(msg)
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(folder.glob(f"**/{METRICS_FILE}")):
        benchmark = path.parent.name
        if benchmark in BENCHMARK_FOLDERS:
            run = path.parent.parent.name if path.parent.parent != folder.parent else folder.name
            runs.setdefault(run, {})[benchmark] = json.loads(path.read_text(encoding="utf-8"))
    if not runs:
        msg = f"no {METRICS_FILE} of any benchmark under {folder}"
        raise FileNotFoundError(msg)
    return runs


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def table(runs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """The paper-style markdown table: one row per run."""
    header = ["run", *(name for name, _, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run, benchmarks in runs.items():
        cells = [_cell(benchmarks.get(folder, {}).get(key)) for _, folder, key in COLUMNS]
        lines.append("| " + " | ".join([run, *cells]) + " |")
    return "\n".join(lines) + "\n"


def flask_table(runs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """FLASK's per-skill averages: one row per run that has them, a column per skill."""
    scored = {run: b["flask"]["per_skill"] for run, b in runs.items() if "flask" in b}
    if not scored:
        return ""
    skills = list(next(iter(scored.values())))
    lines = ["| run | " + " | ".join(skills) + " |", "|" + "---|" * (len(skills) + 1)]
    for run, per_skill in scored.items():
        lines.append("| " + " | ".join([run, *(_cell(per_skill.get(s)) for s in skills)]) + " |")
    return "\nFLASK per skill:\n" + "\n".join(lines) + "\n"


def plots(runs: Mapping[str, Mapping[str, Mapping[str, Any]]], folder: Path) -> list[Path]:
    """The paper's FLASK radar chart over every run with FLASK scores."""
    per_run = {
        run: {skill: v for skill, v in b["flask"]["per_skill"].items() if v is not None}
        for run, b in runs.items()
        if "flask" in b
    }
    per_run = {run: scores for run, scores in per_run.items() if scores}
    if not per_run:
        return []
    return [radar_chart(per_run, folder / "flask_radar.png")]


def render(folder: Path) -> str:
    """The report of every run under ``folder``, and any ablation tables.

    Writes the plots into ``folder`` and says where.
    """
    runs = collect(folder)
    parts = [table(runs), flask_table(runs)]
    parts += [f"\nplot: {path}\n" for path in plots(runs, folder)]
    parts += [
        f"\n{path.relative_to(folder)}:\n{path.read_text(encoding='utf-8')}"
        for path in sorted(folder.glob("**/ablation.md"))
    ]
    return "".join(parts)
