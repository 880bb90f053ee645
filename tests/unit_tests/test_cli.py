import json
from pathlib import Path

import pytest

from langchain_moa import cli

DATA = Path(__file__).parents[2].parent / "shared" / "data"


def test_eval_without_data_names_the_option_and_variable(monkeypatch, capsys) -> None:
    monkeypatch.delenv("MOA_DATA_DIR", raising=False)
    with pytest.raises(SystemExit) as caught:
        cli.main(["eval", "gsm8k", "--model", "openai:gpt-4o-mini", "--no-cache"])
    assert caught.value.code == 2
    assert "pass --data-dir or set MOA_DATA_DIR" in capsys.readouterr().err


def test_unknown_preset_is_named(capsys, tmp_path) -> None:
    with pytest.raises(SystemExit):
        cli.main(
            ["eval", "gsm8k", "--model", "nonsense", "--data-dir", str(tmp_path), "--no-cache"]
        )
    assert "unknown model 'nonsense'" in capsys.readouterr().err


def test_eval_subcommands_are_listed(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["eval", "--help"])
    out = capsys.readouterr().out
    for command in ("gsm8k", "ablation", "report"):
        assert command in out


def test_score_alpaca_reproduces_the_leaderboard_win_rate(capsys) -> None:
    fixture = (
        DATA / "alpaca_eval/fixtures/alpaca-7b_weighted_alpaca_eval_gpt4_turbo_annotations.json"
    )
    assert cli.main(["eval", "score-alpaca", str(fixture), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert abs(metrics["win_rate"] - 2.59145) < 0.001
    assert metrics["n_total"] == 805
    assert metrics["formula"] == "length_controlled_minimal"


def test_score_alpaca_rejects_a_file_that_is_not_annotations(tmp_path, capsys) -> None:
    bad = tmp_path / "outputs.json"
    bad.write_text(json.dumps([{"instruction": "x", "output": "y"}]))
    with pytest.raises(SystemExit):
        cli.main(["eval", "score-alpaca", str(bad)])
    assert "annotations need ['output_1', 'output_2', 'preference']" in capsys.readouterr().err
