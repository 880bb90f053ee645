"""The embedded server starts on the first request, not before; tokens are the model's own."""

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


def _run(script: str, env: dict[str, str]):
    """Run ``script`` in a fresh interpreter; its last line of output, as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=env,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_first_request_starts_the_server_and_tokens_are_the_models_own() -> None:
    env, mark = marked_env()
    report = _run(SCRIPT, env)
    assert report["after_construction"] is False
    # SmolLM2's tokenizer, from the model file (tiktoken would need a download):
    # counting starts no server.
    assert 2 <= report["tokens"] <= 8
    assert report["message_tokens"] > report["tokens"]
    assert report["after_counting"] is False
    assert report["answer"].strip()
    assert report["calls"] == 3
    # The program has ended: its server with it.
    assert report["pid"] not in llama_server_pids(mark=mark)


CONCURRENT = """
import asyncio, json
from langchain_moa.local import shared_server

async def main():
    server = shared_server()
    model = server.chat_model(max_tokens=4, max_retries=0)
    first = asyncio.create_task(model.ainvoke("Hi"))
    while not server.running:  # the first request is starting the server
        await asyncio.sleep(0.01)
    later = [model.ainvoke(text) for text in ("Hello", "Hey", "Yo")]
    answers = await asyncio.gather(first, *later)
    return [answer.text for answer in answers]

print(json.dumps(asyncio.run(main())))
"""


def test_concurrent_first_requests_wait_for_the_server_to_answer() -> None:
    # Without waiting for readiness, the requests that did not start the
    # server reach a process that does not listen yet: connection refused.
    env, _ = marked_env()
    answers = _run(CONCURRENT, env)
    assert len(answers) == 4
    assert all(answer.strip() for answer in answers)
