"""The budget analysis on scripted results.

`write_paper_example` (``benchmarks/pareto_example.py``) writes docs/evaluation.md's example folder:
the paper's published LC win rates with token counts assumed, not measured.
"""

import json

import pytest

from benchmarks.pareto_example import (
    GPT4O,
    GPT4T,
    PAPER,
    PROPOSERS,
    QWEN72,
    QWEN110,
    call_record,
    moa_record,
    single_record,
    write_metrics,
    write_paper_example,
)
from langchain_moa import cli
from langchain_moa.costs import Rates
from langchain_moa.eval import pareto, report
from langchain_moa.eval.generation import query_cost_usd, query_tflops, summarize_generations


def _point(run: str, quality: float, cost: float | None, tflops: float | None = None):
    return pareto.Point(run, quality, cost, tflops)


def test_frontier_keeps_ties_and_drops_dominated_points() -> None:
    points = [
        _point("cheap", 30.0, 1.0),
        _point("twin-a", 50.0, 2.0),
        _point("twin-b", 50.0, 2.0),  # alike in both: neither dominates
        _point("same-cost-worse", 45.0, 2.0),  # dominated by the twins (equal cost)
        _point("same-quality-dearer", 50.0, 3.0),  # dominated (equal quality)
        _point("best", 60.0, 5.0),
        _point("unknown", 99.0, None),  # takes no part
    ]
    on = [p.run for p in pareto.frontier(points, pareto.by_cost)]
    assert on == ["cheap", "twin-a", "twin-b", "best"]


def test_tflops_are_each_layers_largest_call_summed_by_hand() -> None:
    rates = Rates(prices={"a": (1.0, 2.0), "b": (3.0, 3.0)}, parameters={"a": 10.0, "b": 1.0})
    record = {
        "model": "moa",
        "layers": [
            [
                call_record(1, 0, "a", 100),  # 2 x 10e9 x 500 = 10 TFLOPs
                call_record(1, 1, "b", 600),  # 2 x 1e9 x 1,000 = 2 TFLOPs
                # A failed call adds nothing to either.
                {"layer": 1, "index": 2, "model": "b", "usage": None, "error": "TimeoutError: x"},
            ],
            [call_record(2, 0, "b", 1600)],  # 2 x 1e9 x 2,000 = 4 TFLOPs
        ],
    }
    assert query_tflops(record, rates) == pytest.approx(10 + 4)
    # US$: (100 x 1 + 400 x 2) + (600 + 400) x 3 + (1,600 + 400) x 3, per million.
    assert query_cost_usd(record, rates) == pytest.approx((900 + 3000 + 6000) / 1e6)
    # A successful call without usage makes both unknown.
    record["layers"][1][0]["usage"] = None
    assert query_tflops(record, rates) is None
    assert query_cost_usd(record, rates) is None


def test_unknown_price_is_none_never_zero(tmp_path) -> None:
    record = single_record("my-own-model")
    summary = summarize_generations([record, single_record(GPT4O)], Rates())
    assert summary["cost_usd_per_query"] is None
    assert summary["tflops_per_query"] is None
    assert pareto.cost_per_query(summary, Rates()) == (
        None,
        "no price for my-own-model (pass --prices)",
    )
    rates = Rates.extended(prices={"my-own-model": (1.0, 1.0)}, parameters={"my-own-model": 1.0})
    cost, why = pareto.cost_per_query(summary, rates)
    assert why == ""
    assert cost == pytest.approx((700 * 1.0 + 300 * 5.0 + 400 * 15.0) / 1e6 / 2)


def test_summary_cost_and_report_cost_agree() -> None:
    summary = summarize_generations([moa_record(QWEN110, 3)] * 3, Rates())
    cost, _ = pareto.cost_per_query(summary, Rates())
    assert cost == pytest.approx(summary["cost_usd_per_query"])
    # 6 x 700 tokens, then 7 calls of 3,100, at the proposers' and Qwen 110B's list prices.
    prices = sum(Rates().price(m)[0] for m in PROPOSERS)
    assert cost == pytest.approx((700 * prices + 3100 * prices + 3100 * 1.8) / 1e6)
    # Layers' largest calls are Qwen 110B's: 2 x 111B x (700 + 3,100 + 3,100) tokens.
    assert summary["tflops_per_query"] == pytest.approx(2 * 111 * (700 + 3100 + 3100) / 1e3)


def test_frontier_table_of_the_paper_example(tmp_path) -> None:
    runs = report.collect(write_paper_example(tmp_path))
    analysis = pareto.budget(
        runs, pareto.choose_metric(runs, report.named_columns(runs), None), Rates()
    )
    table = pareto.frontier_table(analysis)
    lines = table.splitlines()
    assert lines[0] == (
        "| run | AlpacaEval length_controlled_v1 | US$ per query | TFLOPs per query "
        "| on the frontier of |"
    )
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert rows["GPT-4 Turbo"].endswith("| - |")  # dominated by GPT-4o: cheaper and better
    assert rows["Llama 3 70B"].endswith("| - |")  # same cost as Qwen 72B, lower LC
    assert rows["MoA"].endswith("| cost, TFLOPs |")
    assert rows["MoA-Lite"].endswith("| cost, TFLOPs |")
    assert rows["Qwen1.5 72B"].endswith("| cost |")  # WizardLM (39B active) needs fewer TFLOPs
    assert rows["WizardLM 8x22B"].endswith("| cost, TFLOPs |")
    assert "| MoA-Lite | 59.30 | 0.00783 | 601.8 |" in table
    assert len(rows) == len(PAPER)


def test_report_writes_the_plot_and_the_table(tmp_path) -> None:
    folder = write_paper_example(tmp_path / "results")
    write_metrics(folder, "gsm8k-only", "gsm8k", {"accuracy": 50.0})
    text = report.render(folder)
    assert "Budget analysis (AlpacaEval length_controlled_v1 against cost" in text
    assert "| MoA | 65.10 |" in text
    assert f"plot: {folder / 'pareto.png'}" in text
    assert "left out: gsm8k-only: no alpaca_eval length_controlled_winrate" in text
    image = (folder / "pareto.png").read_bytes()
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(image) > 1000


def test_a_chosen_metric_and_too_few_runs_say_why_no_plot(tmp_path) -> None:
    write_metrics(
        tmp_path, "one", "gsm8k", {"accuracy": 50.0, "generation": {"items": 0, "usage": {}}}
    )
    text = report.render(tmp_path, metric="gsm8k.accuracy")
    assert "no plot: 0 run(s) with GSM8K acc and a known cost" in text
    assert "unknown US$ per query: one: no generations recorded" in text
    assert not (tmp_path / "pareto.png").exists()
    with pytest.raises(ValueError, match="unknown metric"):
        report.render(tmp_path, metric="gsm8k.nothing")


def test_report_time_parameters_resize_single_models_but_not_a_moas(tmp_path) -> None:
    runs = report.collect(write_paper_example(tmp_path))
    resized = Rates.extended(parameters={QWEN72: 36.0})
    single = runs["Qwen1.5 72B"]["alpaca_eval"]["generation"]
    assert pareto.tflops_per_query(single, resized) == (pytest.approx(2 * 36 * 700 / 1e3), "")
    moa = runs["MoA-Lite"]["alpaca_eval"]["generation"]
    value, why = pareto.tflops_per_query(moa, resized)
    assert value is None
    assert why == f"evaluated with {QWEN72} at 72B active parameters, not 36B"
    # Results from before TFLOPs were stored: cost still comes from their usage.
    del moa["tflops_per_query"]
    assert pareto.tflops_per_query(moa, Rates())[0] is None
    assert pareto.cost_per_query(moa, Rates())[0] == pytest.approx(0.00783)


def test_cli_report_with_prices_and_metric(tmp_path, capsys) -> None:
    folder = write_paper_example(tmp_path / "results")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({GPT4T: [1.0, 1.0]}))  # now GPT-4 Turbo is cheap
    parameters = tmp_path / "parameters.json"
    parameters.write_text(json.dumps({GPT4T: 1.0}))
    code = cli.main(
        ["eval", "report", str(folder), "--prices", str(prices), "--parameters", str(parameters),
         "--metric", "alpaca_eval.length_controlled_winrate"]
    )  # fmt: skip
    assert code == 0
    assert "| GPT-4 Turbo | 55.00 | 0.0007 | 1.4 | cost, TFLOPs |" in capsys.readouterr().out
    assert (folder / "pareto.png").exists()
