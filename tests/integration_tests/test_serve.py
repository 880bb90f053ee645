"""``moa serve`` over real HTTP on the embedded model, through the official ``openai`` client.

The app runs in uvicorn on a free 127.0.0.1 port, in a thread of the test
process, over the session's llama.cpp server. Its stacks' models get HTTP
clients of their own: the uvicorn thread runs its own event loop, and the
server's shared clients may hold connections of the tests' loop. Every call
is a few tokens long, as the embedded server answers one request at a time.
"""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from langchain_openai import ChatOpenAI

from langchain_moa import ChatMoA
from tests.integration_tests.embedded import embedded_stack, free_port, serving, wait_until_healthy

# Two minutes in all on 2 cores; more means something hangs.
pytestmark = pytest.mark.timeout(300)

MOA = str(Path(sys.executable).with_name("moa"))
KEY = "test-serve-token-0123456789"
QUESTION = [{"role": "user", "content": "Name a fruit."}]


@pytest.fixture(scope="module")
def served(server):
    stacks = {
        "local": embedded_stack(server, proposers=3, max_tokens=8),
        "tiny": embedded_stack(server, proposers=1, max_tokens=2),
    }
    with serving(stacks, api_key=KEY) as background:
        yield background


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served.base_url, api_key=KEY, max_retries=0)


def test_plain_answer_with_usage(client):
    answer = client.chat.completions.create(model="local", messages=QUESTION, max_tokens=8)
    assert answer.object == "chat.completion"
    assert answer.model == "local"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content.strip()
    # 8 tokens may cut the answer: llama.cpp says so, and so does the endpoint.
    assert answer.choices[0].finish_reason in {"stop", "length"}
    # Four calls' tokens: three proposers and the aggregator.
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.completion_tokens > answer.choices[0].message.content.count(" ")
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_streamed_answer_with_usage_at_the_end(client):
    stream = client.chat.completions.create(
        model="local",
        messages=QUESTION,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] in {"stop", "length"}
    assert set(finish[:-1]) == {None}
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_models_are_listed(client):
    assert [m.id for m in client.models.list()] == ["local", "tiny"]


def test_a_wrong_token_is_an_authentication_error(served):
    wrong = openai.OpenAI(base_url=served.base_url, api_key="wrong-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        wrong.chat.completions.create(model="local", messages=QUESTION)
    assert "wrong-token" not in str(raised.value)


def test_a_malformed_request_is_a_bad_request_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="local", messages=[{"role": "robot", "content": "hi"}])
    assert "messages[0].role" in str(raised.value)
    assert raised.value.body["param"] == "messages[0].role"


def test_an_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert "local, tiny" in str(raised.value)


def test_a_moa_endpoint_is_a_proposer_of_another_stack(served):
    def endpoint():
        return ChatOpenAI(
            base_url=served.base_url, api_key=KEY, model="tiny", max_tokens=2, max_retries=0
        )

    outer = ChatMoA(proposers=[endpoint()], aggregator=endpoint(), layers=2)
    answer = outer.invoke("Name a colour.")
    assert answer.text.strip()
    calls = [call for layer in answer.response_metadata["layers"] for call in layer]
    assert [call["error"] for call in calls] == [None, None]
    # Each call's usage is the inner stack's: two calls each.
    assert answer.usage_metadata["total_tokens"] > 0


async def test_fifty_concurrent_requests_are_all_answered(served):
    client = openai.AsyncOpenAI(base_url=served.base_url, api_key=KEY, max_retries=0)

    async def ask(index: int):
        question = [{"role": "user", "content": f"Say the number {index}."}]
        # The embedded default's shape: three proposers and the aggregator, each call short.
        return await client.chat.completions.create(model="local", messages=question, max_tokens=2)

    answers = await asyncio.gather(*(ask(i) for i in range(50)))
    await client.close()
    assert len(answers) == 50
    assert len({a.id for a in answers}) == 50
    assert all(a.choices[0].message.content for a in answers)
    # Every request ran the stack: its usage counts proposers' tokens besides the answer's.
    assert all(a.usage is not None and a.usage.completion_tokens >= 2 for a in answers)


def test_moa_serve_help():
    done = subprocess.run(
        [MOA, "serve", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--host", "--port", "--stack", "--api-key-env", "--max-concurrency"):
        assert flag in done.stdout


def test_moa_serve_serves_a_stack_file(server, tmp_path):
    server.start()
    entry = f"{{model: 'openai:{server.model_alias}', base_url: '{server.base_url}'}}"
    stack = tmp_path / "filed.yaml"
    stack.write_text(
        f"proposers: [{entry}]\naggregator: {entry}\nlayers: 2\nmax_tokens: 2\n",
        encoding="utf-8",
    )
    port = free_port()
    env = {**os.environ, "MY_SERVE_TOKEN": KEY}
    process = subprocess.Popen(
        [MOA, "serve", "--port", str(port), "--stack", str(stack), "--api-key-env",
         "MY_SERVE_TOKEN"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_until_healthy(process, port)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY)
        ids = [m.id for m in client.models.list()]
        assert ids == ["local", "moa", "moa-lite", "moa-gpt4o", "filed"]
        answer = client.chat.completions.create(model="filed", messages=QUESTION)
        assert answer.choices[0].message.content.strip()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert KEY not in stderr
