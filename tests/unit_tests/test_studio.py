"""``moa studio`` and the graph ``langchain_moa.studio`` serves: which stack; the review stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_moa import cli, studio
from langchain_moa.stacks import StackError
from langchain_moa.stacks.presets import local_spec

STACK = """\
proposers: ["openai:proposer-a", "openai:proposer-b"]
aggregator: "openai:aggregator"
layers: 2
max_tokens: 7
"""


@pytest.fixture
def stack_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    # ChatOpenAI opens (never connects) a socket to probe TCP keepalive options when
    # it is built; pytest-socket blocks that and warns. Without keepalive: no probe.
    monkeypatch.setenv("LANGCHAIN_OPENAI_TCP_KEEPALIVE", "0")
    path = tmp_path / "mine.yaml"
    path.write_text(STACK, encoding="utf-8")
    return path


def test_the_graph_is_the_stack_files_whole_stack(stack_file: Path) -> None:
    graph = studio.build_studio_graph({studio.STACK_ENV: str(stack_file)})
    nodes = set(graph.get_graph().nodes)
    assert {"layer1/proposer-a", "layer1/proposer-b", "layer1/join", "aggregator"} <= nodes
    assert graph.interrupt_before_nodes == []
    spec = studio.studio_spec({studio.STACK_ENV: str(stack_file)})
    assert spec.max_tokens == 7


def test_review_stops_every_run_before_the_aggregator(stack_file: Path) -> None:
    environ = {studio.STACK_ENV: str(stack_file), studio.REVIEW_ENV: "1"}
    assert studio.build_studio_graph(environ).interrupt_before_nodes == ["aggregator"]


def test_a_preset_or_else_the_embedded_stack() -> None:
    assert studio.studio_spec({studio.PRESET_ENV: "moa-lite"}).preset == "moa-lite"
    embedded = studio.studio_spec({studio.MAX_TOKENS_ENV: "12"})
    assert embedded.model_dump() == local_spec(max_tokens=12).model_dump()
    local = studio.studio_spec({studio.PRESET_ENV: "local"})
    assert local.model_dump() == local_spec(max_tokens=256).model_dump()


@pytest.mark.parametrize(
    ("environ", "error", "message"),
    [
        ({studio.STACK_ENV: "a.yaml", studio.PRESET_ENV: "moa"}, ValueError, "both set"),
        ({studio.PRESET_ENV: "gpt-5-council"}, StackError, "preset"),
        ({studio.REVIEW_ENV: "yes"}, ValueError, "MOA_STUDIO_REVIEW must be 1"),
        ({studio.STACK_ENV: "/nowhere/stack.yaml"}, FileNotFoundError, "/nowhere/stack.yaml"),
    ],
)
def test_wrong_settings_are_named(environ: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        studio.build_studio_graph(environ)


def test_the_dev_command_serves_the_packaged_config(tmp_path: Path, monkeypatch) -> None:
    command = studio.dev_command(host="127.0.0.1", port=2100, browser=False)
    assert command[1:] == ["dev", "--config", str(studio.CONFIG), "--host", "127.0.0.1",
                           "--port", "2100", "--no-browser"]  # fmt: skip
    config = json.loads(studio.CONFIG.read_text())
    assert config["graphs"]["moa"]["path"] == "langchain_moa.studio:graph"
    assert config["http"]["app"] == "langchain_moa.studio:app"
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    with pytest.raises(FileNotFoundError, match=r"langchain-moa\[studio\]"):
        studio.dev_command(host="h", port=1, browser=True, environ={"PATH": str(tmp_path)})


def test_moa_studio_with_a_wrong_stack_file_stops_before_serving(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("proposers: 3\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["studio", "--stack", str(bad), "--no-browser"])
    assert stopped.value.code == 2
    assert "bad.yaml" in capsys.readouterr().err
