import gzip
import json

import pytest

from langchain_moa import cli
from tests.fixtures import FIXTURES
from tests.unit_tests.eval.hf_cache import use_hf_cache

ANNOTATIONS = (
    FIXTURES / "alpaca_eval" / "alpaca-7b_weighted_alpaca_eval_gpt4_turbo_annotations.json.gz"
)


def test_eval_with_a_data_dir_without_the_file_names_it(monkeypatch, capsys, tmp_path) -> None:
    # Without --data-dir the packaged data is used; a folder given replaces it, wholly.
    monkeypatch.delenv("MOA_DATA_DIR", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    (tmp_path / "gsm8k").mkdir()
    with pytest.raises(SystemExit) as caught:
        cli.main(
            ["eval", "gsm8k", "--model", "openai:gpt-4o-mini", "--no-cache",
             "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]
        )  # fmt: skip
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert f"data file not found: {tmp_path / 'gsm8k' / 'test.jsonl'}" in error
    assert "--data-dir" in error


def test_eval_with_a_missing_data_dir_names_it(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    with pytest.raises(SystemExit) as caught:
        cli.main(["eval", "gsm8k", "--model", "openai:gpt-4o-mini", "--no-cache"])
    assert caught.value.code == 2
    assert f"benchmark data folder not found: {tmp_path / 'nowhere'}" in capsys.readouterr().err


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


def test_score_alpaca_reproduces_the_leaderboard_win_rate(capsys, tmp_path, monkeypatch) -> None:
    # An empty Hugging Face cache, offline: without alpaca_eval's hub files, LC is minimal.
    use_hf_cache(monkeypatch, tmp_path / "hf")
    fixture = tmp_path / "annotations.json"
    fixture.write_bytes(gzip.decompress(ANNOTATIONS.read_bytes()))
    assert cli.main(["eval", "score-alpaca", str(fixture), "--json"]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)
    assert abs(metrics["win_rate"] - 2.59145) < 0.001
    assert metrics["n_total"] == 805
    assert metrics["formula"] == "length_controlled_minimal"
    assert "LC reported as length_controlled_minimal" in captured.err


def test_score_alpaca_rejects_a_file_that_is_not_annotations(tmp_path, capsys) -> None:
    bad = tmp_path / "outputs.json"
    bad.write_text(json.dumps([{"instruction": "x", "output": "y"}]))
    with pytest.raises(SystemExit):
        cli.main(["eval", "score-alpaca", str(bad)])
    assert "annotations need ['output_1', 'output_2', 'preference']" in capsys.readouterr().err
