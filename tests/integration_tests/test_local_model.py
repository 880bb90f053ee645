"""MoA on the real SmolLM2-135M-Instruct, served by llama.cpp on 127.0.0.1."""

import asyncio
import signal
import subprocess
import sys
import time

import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from langchain_moa import ChatMoA, LlamaServer, get_accounting, get_calls
from langchain_moa.local import shared_server, smollm2_gguf
from tests.integration_tests.conftest import llama_server_pids, marked_env

MAX_TOKENS = 24
QUESTION = "What is the capital of France? Answer in one sentence."


@pytest.fixture(scope="module")
def moa(server):
    return ChatMoA.local(server=server, max_tokens=MAX_TOKENS)


def test_answer_usage_and_a_record_per_call(moa) -> None:
    result = moa.invoke([SystemMessage("You are a helpful assistant."), HumanMessage(QUESTION)])
    assert result.content.strip()
    assert result.usage_metadata["input_tokens"] > 0
    assert result.usage_metadata["output_tokens"] > 0
    proposers, aggregator = result.response_metadata["layers"]
    assert [c["node"] for c in proposers] == [
        "layer1/smollm2-135m-instruct-1",
        "layer1/smollm2-135m-instruct-2",
        "layer1/smollm2-135m-instruct-3",
    ]
    assert [c["node"] for c in aggregator] == ["aggregator"]
    for call in [*proposers, *aggregator]:
        assert call["error"] is None
        assert call["text"].strip()
        assert call["model"] == "smollm2-135m-instruct"
        assert call["latency_s"] > 0
        # max_tokens reaches the server (ChatOpenAI's max_completion_tokens would not).
        assert 0 < call["usage"]["output_tokens"] <= MAX_TOKENS
        assert call["usage"]["input_tokens"] > 0
    # The aggregator read the references: its prompt is longer than a proposer's.
    assert aggregator[0]["usage"]["input_tokens"] > proposers[0]["usage"]["input_tokens"] + 20
    assert result.usage_metadata["output_tokens"] == sum(
        c["usage"]["output_tokens"] for c in [*proposers, *aggregator]
    )


def test_the_accounting_adds_up_the_calls_made_over_http(moa) -> None:
    result = moa.invoke(QUESTION)
    calls, accounting = get_calls(result), get_accounting(result)
    for call in calls:
        tokens = call["usage"]["input_tokens"] + call["usage"]["output_tokens"]
        # The embedded model runs locally (price 0) and has 135M parameters.
        assert call["cost_usd"] == 0.0
        assert call["tflops"] == pytest.approx(2 * 0.135e9 * tokens / 1e12)
    layer, aggregator = accounting["layers"]
    assert layer["tflops"] == max(c["tflops"] for c in calls if c["layer"] == 1)
    assert layer["critical_path_s"] == max(c["latency_s"] for c in calls if c["layer"] == 1)
    total = accounting["total"]
    assert total["tflops"] == pytest.approx(layer["tflops"] + aggregator["tflops"])
    assert total["cost_usd"] == 0.0
    assert total["usage"] == result.usage_metadata
    assert total["critical_path_s"] <= total["latency_s"]


def test_stream_yields_the_aggregators_tokens(moa) -> None:
    chunks = list(moa.stream(QUESTION))
    texts = [c.content for c in chunks if c.content]
    assert len(texts) >= 2
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content.strip()
    final = merged.response_metadata["layers"][-1][0]
    assert final["text"] == merged.content
    assert merged.usage_metadata["output_tokens"] > 0
    # The streamed aggregator's usage is counted, and its first token timed.
    assert final["usage"]["output_tokens"] > 0
    assert 0 < final["ttft_s"] < final["latency_s"]
    assert get_accounting(merged)["total"]["ttft_s"] > final["ttft_s"]


async def test_ainvoke_and_astream(moa) -> None:
    result = await moa.ainvoke(QUESTION)
    assert result.content.strip()
    assert len(result.response_metadata["layers"][0]) == 3
    text = "".join([c.content async for c in moa.astream(QUESTION)])
    assert text.strip()


async def test_concurrent_streams_on_one_server_are_not_cut(server) -> None:
    # The server is started with --interrupt_requests False; with the default a
    # second request ends the first one's stream early.
    model = server.chat_model(max_tokens=MAX_TOKENS, temperature=0.7, seed=1)

    async def stream(question: str):
        merged = None
        async for chunk in model.astream(question):
            merged = chunk if merged is None else merged + chunk
        return merged

    first, second = await asyncio.gather(
        stream("Write a long story about a dragon."), stream("Write a long poem about the sea.")
    )
    for message in (first, second):
        assert message.response_metadata.get("finish_reason") in {"stop", "length"}
        assert len(message.content.split()) >= 5


def test_default_chat_moa_is_the_embedded_stack_started_on_its_first_call() -> None:
    try:
        moa = ChatMoA(max_tokens=MAX_TOKENS)
        nodes = set(moa.graph.get_graph().nodes)
        assert {f"layer1/smollm2-135m-instruct-{i}" for i in (1, 2, 3)} <= nodes
        assert "layer2/join" not in nodes  # two layers: proposers and aggregator
        assert moa.model_name == "moa-2l:smollm2-135m-instruct"
        assert shared_server().pid is None  # built, not started
        result = moa.invoke(QUESTION)
        assert result.content.strip()
        assert len(result.response_metadata["layers"][0]) == 3
        pid = shared_server().pid
        assert pid in llama_server_pids()
    finally:
        shared_server().stop()
    assert pid not in llama_server_pids()


def test_server_stops_on_exit_and_leaves_no_process() -> None:
    with LlamaServer(n_ctx=512) as running:
        pid = running.pid
        assert pid in llama_server_pids()
        reply = running.chat_model(max_tokens=4).invoke("Hi")
        assert reply.content
    assert pid not in llama_server_pids()
    assert not running.running


def test_another_gguf_path_is_served(tmp_path) -> None:
    copy = tmp_path / "My-Model.Q4.gguf"
    copy.symlink_to(smollm2_gguf())
    with LlamaServer(copy, n_ctx=512) as running:
        assert running.model_alias == "my-model"
        moa = ChatMoA.local(server=running, proposers=2, max_tokens=4)
        assert "layer1/my-model-2" in moa.graph.get_graph().nodes
        assert moa.invoke("Hi").content


def test_missing_and_broken_gguf_give_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="GGUF model file not found"):
        LlamaServer(tmp_path / "missing.gguf")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    with pytest.raises(RuntimeError, match=r"llama\.cpp server exited at start"):
        LlamaServer(broken).start()
    assert not llama_server_pids(serving=str(broken))


def test_a_killed_program_leaves_no_server(tmp_path) -> None:
    # SIGKILL runs no exit hooks: the server's wrapper notices its parent is gone.
    script = tmp_path / "killed.py"
    script.write_text(
        "import os, signal\n"
        "from langchain_moa import LlamaServer\n"
        "server = LlamaServer(n_ctx=512).start()\n"
        "print(server.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env, mark = marked_env()
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
        check=False,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL
    orphan = int(done.stdout.split()[0])
    deadline = time.monotonic() + 20
    while llama_server_pids(mark=mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert orphan not in llama_server_pids()
    assert not llama_server_pids(mark=mark)


def test_the_model_reads_quotes_and_brackets_as_written(server) -> None:
    # llama-cpp-python's chatml-function-calling format HTML-escapes messages
    # (see langchain_moa.local.child): 40 apostrophes would reach the model as
    # 40 "&#39;", about 200 prompt tokens instead of about 20.
    server.start()

    def prompt_tokens(text: str) -> int:
        reply = httpx.post(
            f"{server.base_url}/chat/completions",
            json={
                "model": server.model_alias,
                "messages": [{"role": "user", "content": text}],
                "max_tokens": 1,
            },
            timeout=120,
        )
        reply.raise_for_status()
        return int(reply.json()["usage"]["prompt_tokens"])

    plain = prompt_tokens("x")
    assert prompt_tokens("x" + "'" * 40) - plain <= 40
    assert prompt_tokens("x" + "<" * 40) - plain <= 40
    assert prompt_tokens("x" + "&" * 40) - plain <= 40
