import pytest

from langchain_moa import cli


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
