import gzip
import json

import pytest

from langchain_moa import ChatMoA, cli
from langchain_moa.cli import chat
from langchain_moa.graph import AggregatorFailedError
from langchain_moa.stacks import SelfMoASeq
from tests.fixtures import FIXTURES
from tests.unit_tests.eval.hf_cache import use_hf_cache
from tests.unit_tests.scripted import ScriptedChatModel

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


def test_policy_flags_become_stack_fields(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    args = cli._parser().parse_args(
        ["chat", "q", "--model", "openai:a", "--model", "openai:b", "--layers", "2",
         "--min-proposers", "2", "--timeout-s", "20", "--deadline-s", "4",
         "--deadline-after", "quorum", "--fallback", "openai:c", "--fallback", "openai:d",
         "--best-proposer-fallback", "--max-input-tokens", "9000",
         "--reference-format", "delimited", "--reference-filter", "cluster"]
    )  # fmt: skip
    moa = chat._model(args)
    policy = moa.stack.spec.policy(1)
    assert (policy.min_proposers, policy.timeout_s, policy.deadline_s) == (2, 20, 4)
    assert policy.deadline_after == "quorum"
    assert [m.model_name for m in moa.stack.fallbacks] == ["c", "d"]
    assert moa.best_proposer_fallback is True
    assert (moa.max_input_tokens, moa.reference_format, moa.reference_filter) == (
        9000, "delimited", "cluster"
    )  # fmt: skip
    assert moa.stack.aggregator.request_timeout == 20


def test_strategy_flags_become_stack_fields(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    args = cli._parser().parse_args(
        ["chat", "q", "--model", "openai:a", "--strategy", '{"name": "self-moa-seq", "window": 2}',
         "--reference-order", "shuffle", "--early-stop", "embedding",
         "--early-stop-threshold", "0.8"]
    )  # fmt: skip
    spec = chat._model(args).stack.spec
    assert (spec.strategy.name, spec.strategy.window, spec.reference_order) == (
        "self-moa-seq", 2, "shuffle"
    )  # fmt: skip
    assert (spec.early_stop.method, spec.early_stop.threshold) == ("embedding", 0.8)
    path = tmp_path / "stack.yaml"
    path.write_text("proposers: [openai:a]\naggregator: openai:a\nstrategy: rank\n")
    args = cli._parser().parse_args(["chat", "q", "--config", str(path), "--strategy", "self-moa"])
    assert chat._model(args).stack.spec.strategy.name == "self-moa"


def test_bad_strategy_flags_are_named(capsys) -> None:
    for flags, error in [
        (["--strategy", "{oops"], "--strategy: not a JSON table"),
        (["--early-stop-threshold", "0.5"], "--early-stop-threshold needs --early-stop"),
        (["--strategy", "vote"], "strategy: unknown strategy 'vote'"),
    ]:
        with pytest.raises(SystemExit) as caught:
            cli.main(["chat", "q", "--model", "openai:a", *flags])
        assert caught.value.code == 2
        assert error in capsys.readouterr().err


def test_policy_flags_apply_over_a_stack_file(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    path = tmp_path / "stack.toml"
    path.write_text('proposers = ["openai:a"]\naggregator = "openai:a"\ndeadline_s = 9\n')
    args = cli._parser().parse_args(["chat", "q", "--config", str(path), "--timeout-s", "3"])
    spec = chat._model(args).stack.spec
    assert (spec.deadline_s, spec.timeout_s) == (9, 3)


def test_min_proposers_is_a_flag_made_of_its_field_and_applies_over_a_stack_file(
    monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    path = tmp_path / "stack.toml"
    path.write_text('proposers = ["openai:a", "openai:b"]\naggregator = "openai:a"\n')
    args = cli._parser().parse_args(["chat", "q", "--config", str(path), "--min-proposers", "2"])
    assert chat._model(args).stack.spec.min_proposers == 2
    help_text = cli._parser()._subparsers._group_actions[0].choices["chat"].format_help()
    assert "How many proposers of each layer must succeed" in " ".join(help_text.split())


def test_a_failed_run_is_a_one_line_error(monkeypatch, capsys) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "unused")

    def fail(args):
        raise AggregatorFailedError("every aggregator failed: aggregator (x): server_error")

    monkeypatch.setattr(chat, "chat_command", fail)
    args = ["chat", "q"]
    parser = cli._parser()
    monkeypatch.setattr(cli, "_parser", lambda: parser)
    parser.set_defaults(handler=fail)
    with pytest.raises(SystemExit) as caught:
        cli.main(args)
    assert caught.value.code == 2
    assert "moa: error: every aggregator failed" in capsys.readouterr().err


def _shown_layers(moa, capsys) -> str:
    callbacks = [chat._LayerPrinter()]
    moa.invoke("q", config={"callbacks": callbacks})
    return capsys.readouterr().out


def test_show_layers_prints_steps_as_the_answer_not_as_proposers(capsys) -> None:
    draws = iter(range(100))
    sampler = ScriptedChatModel(model_name="p", reply=lambda _: f"sample {next(draws)}")
    moa = ChatMoA(
        proposers=[ScriptedChatModel(model_name="unused")],
        aggregator=ScriptedChatModel(model_name="agg", reply="synthesis"),
        layers=2,
        strategy=SelfMoASeq(window=2, model=sampler, samples=4),
    )
    shown = _shown_layers(moa, capsys)
    # Four samples, each a proposer's heading; the three steps are one answer.
    assert shown.count("\n--- layer1/") == 4, shown
    assert shown.count("\n--- answer ---") == 1, shown
    assert "aggregator/step" not in shown
    assert "synthesis" not in shown  # the answer is the stream's to print


def test_show_layers_prints_a_fallback_s_call_as_the_answer(capsys) -> None:
    moa = ChatMoA(
        proposers=[ScriptedChatModel(model_name="a", reply="first")],
        aggregator=ScriptedChatModel(model_name="broken", error="down"),
        fallbacks=[ScriptedChatModel(model_name="spare", reply="kept")],
        layers=2,
    )
    shown = _shown_layers(moa, capsys)
    assert shown.count("\n--- layer1/") == 1, shown
    assert "first" in shown
    assert "aggregator/fallback" not in shown
    assert "kept" not in shown
