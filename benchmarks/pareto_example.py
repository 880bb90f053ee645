"""The Pareto example of docs/evaluation.md: the paper's stacks, token counts assumed.

Not a measurement. The paper's published AlpacaEval 2.0 LC win rates (Wang et al., 2024,
Table 2) for its stacks, with token counts ASSUMED: every query's instruction is 300 input
tokens, every answer 400 output tokens, and a call that reads the previous layer's 6 answers
has 300 + 6 x 400 = 2,700 input tokens; list prices and model sizes are the package's
(`langchain_moa/costs.py`). ``make figures`` renders docs/evaluation.md's table from it
(`frontier_table`); this script also draws ``docs/pareto.png``::

    .venv/bin/python -m benchmarks.pareto_example
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from langchain_moa.costs import Rates
from langchain_moa.eval import pareto, report
from langchain_moa.eval.generation import summarize_generations

SOURCE = (
    "Illustrative, not a measurement: the paper's published LC win rates with assumed token "
    "counts (`benchmarks/pareto_example.py`)."
)
"""The line under the table, in place of a run's provenance."""

QWEN110 = "Qwen/Qwen1.5-110B-Chat"
QWEN72 = "Qwen/Qwen1.5-72B-Chat"
WIZARD = "microsoft/WizardLM-2-8x22B"
LLAMA = "meta-llama/Llama-3-70b-chat-hf"
MIXTRAL = "mistralai/Mixtral-8x22B-Instruct-v0.1"
DBRX = "databricks/dbrx-instruct"
GPT4O = "gpt-4o-2024-05-13"
GPT4T = "gpt-4-turbo-2024-04-09"
PROPOSERS = [QWEN110, QWEN72, WIZARD, LLAMA, MIXTRAL, DBRX]

INSTRUCTION, ANSWER = 300, 400
WITH_REFERENCES = INSTRUCTION + len(PROPOSERS) * ANSWER


def call_record(layer: int, index: int, model: str, input_tokens: int, **kw: Any) -> dict[str, Any]:
    """One model call of a generation record, answering ``ANSWER`` tokens."""
    usage = {"input_tokens": input_tokens, "output_tokens": ANSWER, "total_tokens": 0}
    return {"layer": layer, "index": index, "model": model, "usage": usage, "error": None} | kw


def moa_record(aggregator: str, layers: int) -> dict[str, Any]:
    """A MoA query: ``layers - 1`` layers of the 6 proposers, then the aggregator."""
    calls = [
        [
            call_record(n, i, m, INSTRUCTION if n == 1 else WITH_REFERENCES)
            for i, m in enumerate(PROPOSERS)
        ]
        for n in range(1, layers)
    ]
    calls.append([call_record(layers, 0, aggregator, WITH_REFERENCES)])
    return {"output": "x", "model": "moa", "usage": None, "latency_s": 1.0, "layers": calls}


def single_record(model: str) -> dict[str, Any]:
    """A query answered by ``model`` alone."""
    usage = {"input_tokens": INSTRUCTION, "output_tokens": ANSWER, "total_tokens": 0}
    return {"output": "x", "model": model, "usage": usage, "latency_s": 1.0, "layers": []}


PAPER = {
    # run: (LC win rate from the paper's Table 2, one query's generation record)
    "MoA with GPT-4o": (65.7, moa_record(GPT4O, 3)),
    "MoA": (65.1, moa_record(QWEN110, 3)),
    "MoA-Lite": (59.3, moa_record(QWEN72, 2)),
    "GPT-4o": (57.5, single_record(GPT4O)),
    "GPT-4 Turbo": (55.0, single_record(GPT4T)),
    "WizardLM 8x22B": (51.3, single_record(WIZARD)),
    "Qwen1.5 110B": (43.9, single_record(QWEN110)),
    "Qwen1.5 72B": (36.6, single_record(QWEN72)),
    "Llama 3 70B": (34.4, single_record(LLAMA)),
    "Mixtral 8x22B": (30.9, single_record(MIXTRAL)),
    "dbrx": (25.4, single_record(DBRX)),
}


def write_metrics(folder: Path, run: str, bench: str, metrics: dict[str, Any]) -> None:
    """``metrics`` as ``moa eval`` stores a run's benchmark results."""
    path = folder / run / bench / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(metrics))


def write_paper_example(folder: Path, items: int = 5) -> Path:
    """The example: a folder of scripted AlpacaEval results, one run per stack."""
    for run, (lc, record) in PAPER.items():
        metrics = {
            "length_controlled_winrate": lc,
            "formula": "length_controlled_v1",
            "generation": summarize_generations([record] * items, Rates()),
        }
        write_metrics(folder, run, "alpaca_eval", metrics)
    return folder


def analysis(folder: Path) -> pareto.Budget:
    """The budget analysis ``moa eval report`` makes of the example folder."""
    runs = report.collect(write_paper_example(folder))
    metric = pareto.choose_metric(runs, report.named_columns(runs), None)
    return pareto.budget(runs, metric, Rates())


def table() -> str:
    """The table: the example's frontiers by cost and by TFLOPs."""
    with tempfile.TemporaryDirectory() as folder:
        return pareto.frontier_table(analysis(Path(folder)))


def main() -> int:
    """Draw ``docs/pareto.png`` from the example and print its table."""
    with tempfile.TemporaryDirectory() as folder:
        budget = analysis(Path(folder))
        pareto.plot(budget, Path(__file__).parents[1] / "docs" / "pareto.png")
        print(pareto.frontier_table(budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
