"""The embedded server starts on the first request, not before; it counts tokens itself."""

import json
import subprocess
import sys

from tests.integration_tests.conftest import llama_server_pids, marked_env

SCRIPT = """
import json, os
from langchain_core.messages import HumanMessage
from langchain_moa import ChatMoA
from langchain_moa.local import shared_server

def running():
    return shared_server().running

moa = ChatMoA(max_tokens=8)
report = {"after_construction": running()}
report["tokens"] = moa.get_num_tokens("Hello, world!")
report["message_tokens"] = moa.get_num_tokens_from_messages([HumanMessage("Hello, world!")])
report["after_counting"] = running()
answer = moa.invoke("Name a colour.")
report["answer"] = answer.text
report["calls"] = len(answer.response_metadata["layers"][0])
report["pid"] = shared_server().pid
print(json.dumps(report))
"""


def test_first_request_starts_the_server_and_tokens_are_the_models_own() -> None:
    env, mark = marked_env()
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=env,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["after_construction"] is False
    # SmolLM2's tokenizer, asked of the server (tiktoken would need a download).
    assert 2 <= report["tokens"] <= 8
    assert report["message_tokens"] > report["tokens"]
    assert report["after_counting"] is True
    assert report["answer"].strip()
    assert report["calls"] == 3
    # The program has ended: its server with it.
    assert report["pid"] not in llama_server_pids(mark=mark)
