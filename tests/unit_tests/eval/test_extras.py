"""``moa`` starts without the eval extra; what needs it says how to install it."""

import json
import subprocess
import sys

import pytest

from langchain_moa.eval import cli as eval_cli
from langchain_moa.eval import flask
from langchain_moa.eval.alpaca import evaluate
from langchain_moa.eval.extras import MissingExtraError, require
from tests.fixtures import FIXTURES
from tests.unit_tests.scripted import ScriptedChatModel

HINT = r"pip install 'langchain-moa\[eval\]'"
EXTRA = ("numpy", "sklearn", "matplotlib", "pooch")


def _python(code):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


def test_importing_the_eval_command_leaves_the_extra_out() -> None:
    code = (
        "import sys, json, langchain_moa.eval.cli\n"
        f"print(json.dumps([m for m in {EXTRA!r} if m in sys.modules]))"
    )
    returncode, out, err = _python(code)
    assert returncode == 0, err
    assert json.loads(out) == []


def test_the_metrics_module_names_the_extra_when_it_is_missing() -> None:
    code = "import sys; sys.modules['sklearn'] = None; import langchain_moa.eval.alpaca.metrics"
    returncode, _, err = _python(code)
    assert returncode != 0
    assert "MissingExtraError: AlpacaEval's metrics need numpy and scikit-learn" in err
    assert "pip install 'langchain-moa[eval]'" in err


def test_require_names_each_missing_distribution(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    require("json", purpose="nothing")
    with pytest.raises(MissingExtraError, match=rf"^x needs scikit-learn, matplotlib .*: {HINT}$"):
        require("numpy", "sklearn", "matplotlib", purpose="x")


def test_score_alpaca_without_the_extra_is_one_line(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    parser = eval_cli.argparse.ArgumentParser()
    eval_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["eval", "score-alpaca", str(tmp_path / "annotations.json")])
    with pytest.raises(SystemExit) as caught:
        args.handler(args)
    assert caught.value.code == 2
    assert capsys.readouterr().err == (
        "moa: error: moa eval score-alpaca needs scikit-learn (the eval extra): "
        "pip install 'langchain-moa[eval]'\n"
    )


async def test_alpaca_says_so_before_any_model_is_asked(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    model = ScriptedChatModel(model_name="m", reply="x")
    with pytest.raises(MissingExtraError, match=rf"^AlpacaEval needs numpy.*: {HINT}$"):
        await evaluate.run(model, FIXTURES, tmp_path, judge=model, limit=1)
    assert model.log == []


async def test_flask_says_so_before_any_model_is_asked(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    model = ScriptedChatModel(model_name="m", reply="x")
    with pytest.raises(MissingExtraError, match=rf"FLASK needs matplotlib .*{HINT}"):
        await flask.run(model, FIXTURES, tmp_path, judge=model, limit=1)
    assert model.log == []
    with pytest.raises(MissingExtraError, match="the FLASK radar chart needs matplotlib"):
        flask.radar_chart({"m": {"Readability": 3.0}}, tmp_path / "radar.png")
