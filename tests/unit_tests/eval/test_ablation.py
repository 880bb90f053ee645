import csv
import io
from functools import partial

import pytest
from langchain_openai import ChatOpenAI

from langchain_moa import ChatMoA
from langchain_moa.costs import Rates
from langchain_moa.eval import ablation, gsm8k
from langchain_moa.stacks.strategy import draws
from tests.fixtures import FIXTURES
from tests.unit_tests.scripted import ScriptedChatModel


def _models():
    proposers = [ScriptedChatModel(model_name=f"p{i}", reply=f"#### {i}") for i in range(3)]
    # The aggregator answers the first problem right (18) unless it only ranks.
    aggregator = ScriptedChatModel(
        model_name="agg",
        reply=lambda m: "2" if "select the single best" in m[0].text else "#### 18",
    )
    return proposers, aggregator


def test_grid_rows() -> None:
    proposers, aggregator = _models()
    rows = ablation.grid(proposers, aggregator)
    assert [r.name for r in rows] == [
        "moa",
        "llm-ranker",
        "n=1", "n=2", "n=3", "n=6",
        "single-proposer n=3", "multiple-proposer n=3",
        "aggregator=p0", "aggregator=p1", "aggregator=p2", "aggregator=agg",
        "layers=2", "layers=3",
        "alone: p0", "alone: p1", "alone: p2", "alone: agg",
    ]  # fmt: skip
    by_name = {r.name: r.model for r in rows}
    assert by_name["llm-ranker"].strategy.name == "rank"
    assert (
        len(by_name["n=6"].graph.get_graph().nodes) == 6 + 5
    )  # + begin, join, aggregator, start, end
    assert by_name["layers=3"].model_name == "moa-3l:agg"
    assert by_name["alone: p1"] is proposers[1]


def test_strategies_axis_compares_every_strategy_with_early_stop_and_shuffle() -> None:
    rows = ablation.grid(
        [ScriptedChatModel(model_name="p")],
        ScriptedChatModel(model_name="agg"),
        layers=3,
        axes=["strategies"],
        agreement="final_answer",
    )
    names = [r.name for r in rows]
    assert names[0] == "moa"
    assert len(names) == 1 + 3 * len(ablation.STRATEGY_ROWS)
    assert {"rank-then-synthesize, early stop", "self-moa-seq, shuffled", "rank"} <= set(names)
    by_name = {r.name: r.model for r in rows}
    stopped = by_name["self-moa, early stop"]
    assert stopped.early_stop is not None
    assert stopped.early_stop.method == "final_answer"
    assert by_name["synthesize, shuffled"].reference_order == "shuffle"
    # One proposer given: three draws of it per layer, as the other axes do.
    assert [len(layer) for layer in by_name["synthesize"].stack.layers] == [3, 3]
    assert by_name["self-moa-seq"].strategy.window == 2


def test_strategies_axis_needs_two_proposer_layers() -> None:
    with pytest.raises(ValueError, match=r"^the strategies axis needs layers >= 3"):
        ablation.grid([ScriptedChatModel()], ScriptedChatModel(), axes=["strategies"])


def test_single_proposer_draws_differ_by_seed_or_skip_the_cache() -> None:
    model = ChatOpenAI(model="m", base_url="http://127.0.0.1:9/v1", api_key="x", seed=5)
    assert [m.seed for m in draws(model, 3)] == [6, 7, 8]
    scripted = ScriptedChatModel(model_name="s")
    copies = draws(scripted, 3)
    assert copies[0] is scripted
    assert [d.cache for d in copies[1:]] == [False, False]


def test_unknown_axis_is_an_error() -> None:
    proposers, aggregator = _models()
    with pytest.raises(ValueError, match=r"unknown ablation axes \['votes'\]"):
        ablation.grid(proposers, aggregator, axes=["votes"])


async def test_grid_runs_and_writes_its_table(tmp_path) -> None:
    proposers, aggregator = _models()
    configurations = ablation.grid(
        proposers, aggregator, axes=["ranker", "proposers"], proposer_counts=(1, 3)
    )
    runner = partial(_gsm8k, limit=2)
    log = io.StringIO()
    rows = await ablation.run_grid(
        configurations, runner, tmp_path, quality_key="accuracy",
        rates=Rates.extended(prices={"p0": (1.0, 2.0)}), progress_file=log, progress=True,
    )  # fmt: skip
    final = log.getvalue().split("\r")[-1]
    assert final.startswith("ablation: 100%")
    assert "4/4" in final
    assert "configuration=n=3" in final
    by_name = {r["configuration"]: r for r in rows}
    assert by_name["moa"]["quality"] == 50.0  # the aggregator gets problem 1 right
    assert by_name["llm-ranker"]["quality"] == 0.0  # picks "#### 1"
    assert by_name["moa"]["calls"] == 2 * (3 + 1)
    assert by_name["n=1"]["calls"] == 2 * (1 + 1)
    assert by_name["moa"]["cost_usd"] is None  # not every model has a price
    assert by_name["moa"]["output_tokens"] > 0
    with (tmp_path / "ablation.csv").open() as table:
        assert [r["configuration"] for r in csv.DictReader(table)] == [
            "moa",
            "llm-ranker",
            "n=1",
            "n=3",
        ]
    markdown = (tmp_path / "ablation.md").read_text()
    assert markdown.startswith("| configuration | axis | accuracy |")
    assert "| llm-ranker | ranker | 0 |" in markdown


async def _gsm8k(model, folder, *, limit):
    return await gsm8k.run(model, FIXTURES, folder, limit=limit)


def test_cost_with_prices_for_every_model() -> None:
    metrics = {
        "accuracy": 10.0,
        "generation": {
            "usage": {"a": {"calls": 2, "input_tokens": 1_000_000, "output_tokens": 500_000}},
            "latency_s_mean": 1.5,
        },
    }
    row = ablation.row(
        ablation.Configuration(
            "x", "moa", ChatMoA(proposers=_models()[0], aggregator=_models()[1])
        ),
        metrics,
        "accuracy",
        Rates.extended(prices={"a": (0.5, 2.0)}),
    )
    assert row["cost_usd"] == pytest.approx(0.5 + 1.0)
    assert row["latency_s"] == 1.5
