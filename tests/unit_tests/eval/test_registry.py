"""One record per benchmark; the command line, the ablation grid and the report read them."""

import argparse
import asyncio
import inspect
import json

import pytest

from langchain_moa.eval import cli as eval_cli
from langchain_moa.eval import mt_bench, registry, report
from langchain_moa.eval.benchmark import Benchmark, Generation
from langchain_moa.eval.data import DataFile
from tests.fixtures import FIXTURES
from tests.unit_tests.scripted import ScriptedChatModel


def _parser():
    parser = argparse.ArgumentParser(prog="moa")
    eval_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(*argv):
    args = _parser().parse_args(["eval", *argv])
    return args.handler(args)


def test_the_papers_settings_per_benchmark() -> None:
    by_name = {b.name: b for b in registry.BENCHMARKS}
    assert list(by_name) == ["alpaca", "mt-bench", "flask", "gsm8k"]
    assert {n: b.folder for n, b in by_name.items()} == {
        "alpaca": "alpaca_eval", "mt-bench": "mt_bench", "flask": "flask", "gsm8k": "gsm8k"
    }  # fmt: skip
    assert {n: b.headline for n, b in by_name.items()} == {
        "alpaca": "length_controlled_winrate",
        "mt-bench": "overall",
        "flask": "average",
        "gsm8k": "accuracy",
    }
    assert {n: b.generation.max_tokens for n, b in by_name.items()} == {
        "alpaca": 2048, "mt-bench": 1024, "flask": 2048, "gsm8k": 2048
    }  # fmt: skip
    assert {b.generation.temperature for b in by_name.values()} == {0.7}
    judges = {n: (b.judge.temperature, b.judge.max_tokens) for n, b in by_name.items() if b.judge}
    assert judges == {"alpaca": (1.0, 1), "mt-bench": (0.0, 2048), "flask": (0.0, 1024)}
    assert by_name["gsm8k"].judge is None


def test_mt_bench_answers_each_category_at_fastchats_temperature() -> None:
    rule = mt_bench.BENCHMARK.generation.item_temperature
    assert rule({"category": "math"}) == 0.0
    assert rule({"category": "stem"}) == 0.1
    assert rule({"category": "writing"}) == 0.7
    assert registry.benchmark("gsm8k").generation.item_temperature({"category": "math"}) is None


def test_records_are_consistent() -> None:
    names = [b.name for b in registry.BENCHMARKS]
    assert len(set(names)) == len(names)
    assert not set(names) & {"ablation", "score-alpaca", "report"}
    assert len({b.folder for b in registry.BENCHMARKS}) == len(names)
    for bench in registry.BENCHMARKS:
        assert inspect.iscoroutinefunction(bench.run), bench.name
        assert bench.headline in dict(map(reversed, bench.columns)), bench.name
        assert all(file.path.startswith(f"{bench.folder}/") for file in bench.files)


def test_unknown_benchmark_lists_them() -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'hellaswag': choose from alpaca, "):
        registry.benchmark("hellaswag")


def test_report_columns_are_the_papers() -> None:
    assert report.columns() == [
        ("AlpacaEval {formula}", "alpaca_eval", "length_controlled_winrate"),
        ("AlpacaEval win", "alpaca_eval", "win_rate"),
        ("avg length", "alpaca_eval", "avg_length"),
        ("MT-Bench", "mt_bench", "overall"),
        ("FLASK avg", "flask", "average"),
        ("GSM8K acc", "gsm8k", "accuracy"),
    ]


def test_every_benchmark_is_a_command(capsys) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["eval", "--help"])
    out = capsys.readouterr().out
    for bench in registry.BENCHMARKS:
        assert bench.name in out


async def _count_words(model, data_dir, out_dir, *, limit=None, concurrency=4):
    rows = [json.loads(line) for line in (data_dir / "words" / "words.jsonl").open()][:limit]
    answers = await asyncio.gather(*(model.ainvoke(row["text"]) for row in rows))
    return {
        "words": sum(len(a.text.split()) for a in answers),
        "generation": {"usage": {}, "latency_s_mean": 0.0},
    }


def test_a_new_benchmark_is_one_record_in_the_registry(monkeypatch, tmp_path, capsys) -> None:
    (tmp_path / "data" / "words").mkdir(parents=True)
    (tmp_path / "data" / "words" / "words.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    words = Benchmark(
        name="words",
        folder="words",
        title="Words",
        files=(DataFile("words/words.jsonl", "0" * 64, "http://127.0.0.1:9/unused"),),
        run=_count_words,
        headline="words",
        generation=Generation(max_tokens=16),
        columns=(("Words", "words"),),
    )
    monkeypatch.setattr(registry, "BENCHMARKS", (*registry.BENCHMARKS, words))
    asked = []

    def scripted(spec, *, max_tokens, temperature):
        asked.append((spec, max_tokens, temperature))
        return ScriptedChatModel(model_name=spec, reply="two words")

    monkeypatch.setattr(eval_cli, "model_from_spec", scripted)
    out = tmp_path / "out"
    common = ["--data-dir", str(tmp_path / "data"), "--out", str(out), "--no-cache"]

    assert _run("words", "--model", "m", *common) == 0
    assert asked == [("m", 16, 0.7)]
    assert json.loads((out / "m" / "words" / "metrics.json").read_text())["words"] == 4

    assert _run("ablation", "--bench", "words", "--axes", "baselines", *common) == 0
    assert "| configuration | axis | words |" in capsys.readouterr().out

    assert _run("report", str(out)) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].endswith("| GSM8K acc | Words |")
    assert "| m | - | - | - | - | - | - | 4 |" in table


def test_judged_benchmarks_get_their_judge_settings(monkeypatch, tmp_path) -> None:
    asked = []

    def scripted(spec, *, max_tokens, temperature):
        asked.append((spec, max_tokens, temperature))
        return ScriptedChatModel(model_name=spec, reply="Rating: [[7]]")

    monkeypatch.setattr(eval_cli, "model_from_spec", scripted)
    common = ["--data-dir", str(FIXTURES), "--out", str(tmp_path), "--no-cache", "--limit", "1"]
    assert _run("mt-bench", "--model", "m", "--judge", "j", *common) == 0
    assert asked == [("m", 1024, 0.7), ("j", 2048, 0.0)]
    metrics = json.loads((tmp_path / "m" / "mt_bench" / "metrics.json").read_text())
    assert metrics["overall"] == 7.0
