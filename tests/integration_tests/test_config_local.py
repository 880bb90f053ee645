"""Config files on the real embedded model: ``local-model`` entries and ``moa chat --config``."""

import subprocess
import sys
from pathlib import Path

from langchain_moa import ChatMoA
from langchain_moa.stacks import factory
from tests.integration_tests.conftest import llama_server_pids, marked_env

MOA = str(Path(sys.executable).with_name("moa"))
MAX_TOKENS = 16

YAML_STACK = f"""\
proposer_layers:
  - [{{model: local-model, seed: 1}}, {{model: local-model, seed: 2}}]
aggregator: {{model: local-model, seed: 0}}
max_tokens: {MAX_TOKENS}
"""

TOML_STACK = f"""\
max_tokens = {MAX_TOKENS}
proposer_layers = [[{{model = "local-model", seed = 1}}, {{model = "local-model", seed = 2}}]]

[aggregator]
model = "local-model"
seed = 0
"""


def test_local_model_entries_answer(tmp_path, monkeypatch, server) -> None:
    monkeypatch.setattr(factory, "shared_server", lambda: server)
    path = tmp_path / "local.yaml"
    path.write_text(YAML_STACK)
    result = ChatMoA.from_config(path).invoke("Name a fruit.")
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
    env, mark = marked_env()
    path = tmp_path / "local.toml"
    path.write_text(TOML_STACK)
    done = subprocess.run(
        [MOA, "chat", "--config", str(path), "--show-layers", "Name three fruits."],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("--- layer1/") == 2
    assert done.stdout.split("--- answer ---", 1)[1].strip()
    summary = done.stderr.strip().splitlines()[-1]
    assert summary.startswith("layer 1: 2 calls, ")
    assert "aggregator: 1 call," in summary
    assert not llama_server_pids(mark=mark)
