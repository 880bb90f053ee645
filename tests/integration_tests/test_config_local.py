"""Config files on the real embedded model: ``local-model`` entries and ``moa chat --config``."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

from langchain_moa import config as config_module
from langchain_moa.config import chat_moa_from_config

MOA = str(Path(sys.executable).with_name("moa"))
MAX_TOKENS = 16

YAML_STACK = f"""\
layers:
  - [{{model: local-model, seed: 1}}, {{model: local-model, seed: 2}}]
aggregator: {{model: local-model, seed: 0}}
max_tokens: {MAX_TOKENS}
"""

TOML_STACK = f"""\
max_tokens = {MAX_TOKENS}
layers = [[{{model = "local-model", seed = 1}}, {{model = "local-model", seed = 2}}]]

[aggregator]
model = "local-model"
seed = 0
"""


def servers_marked(mark: str) -> set[int]:
    """llama.cpp servers started under ``MOA_TEST_MARK=mark``: children inherit the
    environment, so other sessions' servers on this machine do not count."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        marked = f"MOA_TEST_MARK={mark}".encode() in environ
        if b"llama_cpp.server" in cmdline and marked and state != "Z":
            pids.add(int(proc.name))
    return pids


def test_local_model_entries_answer(tmp_path, monkeypatch, server) -> None:
    monkeypatch.setattr(config_module, "shared_server", lambda: server)
    path = tmp_path / "local.yaml"
    path.write_text(YAML_STACK)
    result = chat_moa_from_config(path).invoke("Name a fruit.")
    assert result.content.strip()
    proposers, aggregator = result.response_metadata["layers"]
    assert len(proposers) == 2
    assert len(aggregator) == 1
    for call in [*proposers, *aggregator]:
        assert call["error"] is None
        assert call["text"].strip()
        # The file's max_tokens reaches the server.
        assert 0 < call["usage"]["output_tokens"] <= MAX_TOKENS


def test_moa_chat_config_runs_offline_and_leaves_no_server(tmp_path) -> None:
    mark = uuid.uuid4().hex
    path = tmp_path / "local.toml"
    path.write_text(TOML_STACK)
    done = subprocess.run(
        [MOA, "chat", "--config", str(path), "--show-layers", "Name three fruits."],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "MOA_TEST_MARK": mark},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("--- layer1/") == 2
    assert done.stdout.split("--- answer ---", 1)[1].strip()
    summary = done.stderr.strip().splitlines()[-1]
    assert summary.startswith("layer 1: 2 calls, ")
    assert "aggregator: 1 call," in summary
    assert not servers_marked(mark)
