"""ChatMoA as a chat model: calls, usage, metadata, streaming, configuration."""

import asyncio
import time

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_openai import ChatOpenAI

from langchain_moa import ChatMoA
from langchain_moa import chat_models as chat_models_module
from tests.unit_tests.scripted import ScriptedChatModel


def _stack(delay_s=0.0, token_delay_s=0.0):
    proposers = [
        ScriptedChatModel(model_name=f"p{i}", reply=f"proposal number {i}", delay_s=delay_s)
        for i in range(3)
    ]
    aggregator = ScriptedChatModel(
        model_name="agg", reply="one two three four five six", token_delay_s=token_delay_s
    )
    return proposers, aggregator


def test_is_a_chat_model() -> None:
    proposers, aggregator = _stack()
    assert isinstance(ChatMoA(proposers=proposers, aggregator=aggregator), BaseChatModel)


def test_paper_configuration_repeats_proposers_per_layer() -> None:
    proposers, aggregator = _stack()
    moa = ChatMoA(proposers=proposers, aggregator=aggregator)  # the paper's 3 layers
    result = moa.invoke("q")
    assert [len(layer) for layer in result.response_metadata["layers"]] == [3, 3, 1]
    assert all(len(p.log) == 2 for p in proposers)

    lite = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    assert [len(layer) for layer in lite.invoke("q").response_metadata["layers"]] == [3, 1]


def test_usage_is_summed_over_every_call() -> None:
    proposers, aggregator = _stack()
    result = ChatMoA(proposers=proposers, aggregator=aggregator, layers=3).invoke("q")
    calls = [c for layer in result.response_metadata["layers"] for c in layer]
    assert len(calls) == 7
    assert result.usage_metadata["input_tokens"] == sum(c["usage"]["input_tokens"] for c in calls)
    assert result.usage_metadata["output_tokens"] == 3 * 3 + 3 * 3 + 6
    assert result.usage_metadata["total_tokens"] == (
        result.usage_metadata["input_tokens"] + result.usage_metadata["output_tokens"]
    )


def test_response_metadata_records_every_call() -> None:
    proposers, aggregator = _stack()
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    result = moa.invoke("q")
    meta = result.response_metadata
    assert meta["model_name"] == "moa-2l:agg"
    assert meta["latency_s"] > 0
    layer1, final = meta["layers"]
    assert [c["node"] for c in layer1] == ["layer1/p0", "layer1/p1", "layer1/p2"]
    assert [c["model"] for c in layer1] == ["p0", "p1", "p2"]
    assert [c["text"] for c in layer1] == [f"proposal number {i}" for i in range(3)]
    assert all(c["error"] is None and c["latency_s"] >= 0 for c in layer1)
    assert final[0]["node"] == "aggregator"
    assert final[0]["text"] == result.content
    assert (
        ChatMoA(proposers=proposers, aggregator=aggregator, model_name="mine")
        .invoke("q")
        .response_metadata["model_name"]
        == "mine"
    )


def test_failing_proposer_shows_in_metadata() -> None:
    proposers, aggregator = _stack()
    proposers[1] = ScriptedChatModel(model_name="p1", error="boom")
    result = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2).invoke("q")
    errors = [c["error"] for c in result.response_metadata["layers"][0]]
    assert errors == [None, "RuntimeError: boom", None]
    assert result.content == "one two three four five six"


def test_graph_is_compiled_once(monkeypatch) -> None:
    proposers, aggregator = _stack()
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    graph = moa.graph

    def no_rebuild(*args, **kwargs):
        raise AssertionError("graph rebuilt on a call")

    monkeypatch.setattr(chat_models_module, "build_moa_graph", no_rebuild)
    moa.invoke("q")
    list(moa.stream("q"))
    assert moa.graph is graph


def test_stop_and_call_options_reach_the_aggregator_only() -> None:
    proposers, aggregator = _stack()
    ChatMoA(proposers=proposers, aggregator=aggregator, layers=2).invoke("q", stop=["\n\n"])
    assert aggregator.log[0]["kwargs"]["stop"] == ["\n\n"]
    assert all(p.log[0]["kwargs"]["stop"] is None for p in proposers)


def test_stream_yields_tokens_while_the_aggregator_runs() -> None:
    proposers, aggregator = _stack(token_delay_s=0.05)
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    arrivals, chunks = [], []
    for chunk in moa.stream("q"):
        arrivals.append(time.perf_counter())
        chunks.append(chunk)
    content_arrivals = [t for t, c in zip(arrivals, chunks, strict=True) if c.content]
    assert len(content_arrivals) == 6
    # Several tokens reached us before the aggregator's last token was produced.
    assert sum(t < aggregator.log[0]["end"] for t in content_arrivals) >= 3
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == "one two three four five six"
    assert merged.usage_metadata["output_tokens"] == 3 * 3 + 6
    assert merged.response_metadata["model_name"] == "moa-2l:agg"
    assert len(merged.response_metadata["layers"]) == 2


async def test_astream_yields_tokens_while_the_aggregator_runs() -> None:
    proposers, aggregator = _stack(token_delay_s=0.05)
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    arrivals, text = [], ""
    async for chunk in moa.astream("q"):
        if chunk.content:
            arrivals.append(time.perf_counter())
        text += chunk.content
    assert text == "one two three four five six"
    assert sum(t < aggregator.log[0]["end"] for t in arrivals) >= 3


def test_invoke_does_not_stream_the_aggregator() -> None:
    proposers, aggregator = _stack()
    ChatMoA(proposers=proposers, aggregator=aggregator, layers=2).invoke("q")
    assert "chunk_times" not in aggregator.log[0]


async def test_sync_calls_work_inside_a_running_event_loop() -> None:
    proposers, aggregator = _stack()
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    assert asyncio.get_running_loop().is_running()
    assert moa.invoke("q").content == "one two three four five six"
    assert "".join(c.content for c in moa.stream("q")) == "one two three four five six"


async def test_ainvoke_and_abatch() -> None:
    proposers, aggregator = _stack(delay_s=0.2)
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    start = time.perf_counter()
    results = await moa.abatch(["a", "b", "c"])
    assert time.perf_counter() - start < 0.5  # the three runs overlap too
    assert [r.content for r in results] == ["one two three four five six"] * 3
    assert (await moa.ainvoke("q")).usage_metadata["output_tokens"] == 3 * 3 + 6


def test_batch() -> None:
    proposers, aggregator = _stack()
    results = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2).batch(
        ["a", [HumanMessage("b")]]
    )
    assert len(results) == 2
    assert len(aggregator.log) == 2


def test_model_strings_are_resolved(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-used")
    moa = ChatMoA(proposers=["openai:gpt-4o-mini", "openai:gpt-4o"], aggregator="openai:gpt-4o")
    nodes = set(moa.graph.get_graph().nodes)
    assert {"layer1/gpt-4o-mini", "layer1/gpt-4o", "layer2/gpt-4o-mini", "layer2/gpt-4o"} <= nodes
    assert moa.model_name == "moa-3l:gpt-4o"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": [], "aggregator": "AGG"}, "no proposer layers"),
        ({"layers": [["P"], []], "aggregator": "AGG"}, "layer 2 is empty"),
        ({"layers": ["P"], "aggregator": "AGG"}, "layer 1 must be a list of models"),
        ({"layers": [["P", 42]], "aggregator": "AGG"}, "layer 1, model 2: expected a chat model"),
        ({"layers": [["P"]], "aggregator": object()}, "aggregator: expected a chat model"),
        ({"layers": [["P"]], "aggregator": None}, "no aggregator"),
        ({"layers": [["P"]], "aggregator": "AGG", "min_proposers": 2}, "min_proposers must be"),
        ({"layers": [["P"]], "aggregator": "AGG", "min_proposers": 0}, "min_proposers must be"),
        ({"proposers": ["P"], "aggregator": "AGG", "layers": 1}, "must be at least 2"),
        ({"proposers": "P", "aggregator": "AGG"}, "proposers must be a list"),
        ({"proposers": ["P"], "layers": [["P"]], "aggregator": "AGG"}, "not both"),
        ({"aggregator": "AGG"}, "aggregator was given without proposers"),
        (
            {"layers": [["no-such-provider:some-model"]], "aggregator": "AGG"},
            "layer 1, model 1: cannot create a chat model from 'no-such-provider:some-model'",
        ),
        ({"layers": [["  "]], "aggregator": "AGG"}, "layer 1, model 1: empty model string"),
    ],
)
def test_bad_configuration_names_the_problem(kwargs, message) -> None:
    proposer, aggregator = ScriptedChatModel(model_name="p"), ScriptedChatModel(model_name="a")

    def real(value):
        if value == "P":
            return proposer
        if value == "AGG":
            return aggregator
        if isinstance(value, list):
            return [real(v) for v in value]
        return value

    with pytest.raises(ValueError, match=message):
        ChatMoA(**{k: real(v) for k, v in kwargs.items()})


def test_chat_openai_on_a_custom_endpoint_is_accepted() -> None:
    endpoint = ChatOpenAI(model="qwen", base_url="http://127.0.0.1:9/v1", api_key="x")
    moa = ChatMoA(proposers=[endpoint], aggregator=endpoint, layers=2)
    assert "layer1/qwen" in moa.graph.get_graph().nodes


def test_stream_chunks_carry_no_per_chunk_usage() -> None:
    proposers, aggregator = _stack()
    chunks = list(ChatMoA(proposers=proposers, aggregator=aggregator, layers=2).stream("q"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert [c.usage_metadata is not None for c in chunks].count(True) == 1


def test_stacks_that_differ_only_in_model_parameters_do_not_share_a_cache_key() -> None:
    def stack(temperature):
        model = ChatOpenAI(
            model="m", base_url="http://127.0.0.1:9/v1", api_key="sk-secret-1234567890",
            temperature=temperature,
        )  # fmt: skip
        return ChatMoA(proposers=[model, model], aggregator=model, layers=2)

    first, second = stack(0.1), stack(0.9)
    assert first.model_name == second.model_name
    assert first._get_llm_string() != second._get_llm_string()
    assert "sk-secret" not in first._get_llm_string()


def test_cached_answers_are_reused() -> None:
    proposers, aggregator = _stack()
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2, cache=InMemoryCache())
    first = moa.invoke("q")
    second = moa.invoke("q")
    assert second.content == first.content
    assert len(aggregator.log) == 1


def test_ranker_chat_moa_streams_the_chosen_answer() -> None:
    proposers, _ = _stack()
    ranker = ScriptedChatModel(model_name="ranker", reply="3")
    moa = ChatMoA(proposers=proposers, aggregator=ranker, layers=2, aggregation="rank")
    assert moa.invoke("q").content == "proposal number 2"
    assert "".join(c.content for c in moa.stream("q")) == "proposal number 2"
