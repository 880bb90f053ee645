"""The graph's shape, scheduling and failure handling."""

import time

import pytest
from langchain_core.messages import HumanMessage

from langchain_moa import LayerFailedError, build_moa_graph
from langchain_moa.prompts import RANK_PROMPT
from tests.unit_tests.scripted import ScriptedChatModel


def _models(*names, **kwargs):
    return [ScriptedChatModel(model_name=n, reply=f"answer from {n}", **kwargs) for n in names]


def test_a_node_per_proposer_per_layer_and_a_join_per_layer() -> None:
    graph = build_moa_graph(
        [_models("org/qwen-72b", "llama-70b"), _models("qwen-72b", "llama-70b")],
        ScriptedChatModel(model_name="qwen-110b"),
    )
    nodes = set(graph.get_graph().nodes)
    assert nodes == {
        "__start__",
        "layer1/qwen-72b",
        "layer1/llama-70b",
        "layer1/join",
        "layer2/qwen-72b",
        "layer2/llama-70b",
        "layer2/join",
        "aggregator",
        "__end__",
    }
    mermaid = graph.get_graph().draw_mermaid()
    for node in nodes - {"__start__", "__end__"}:
        assert f"({node})" in mermaid
    edges = {(e.source, e.target) for e in graph.get_graph().edges}
    assert ("__start__", "layer1/qwen-72b") in edges
    assert ("layer1/llama-70b", "layer1/join") in edges
    assert ("layer1/join", "layer2/qwen-72b") in edges
    assert ("layer2/join", "aggregator") in edges
    assert ("aggregator", "__end__") in edges


def test_repeated_model_gets_numbered_nodes() -> None:
    model = ScriptedChatModel(model_name="smol")
    graph = build_moa_graph([[model, model, ScriptedChatModel(model_name="join")]], model)
    assert {"layer1/smol-1", "layer1/smol-2", "layer1/join-1", "layer1/join"} <= set(
        graph.get_graph().nodes
    )


def test_calls_per_layer_and_reference_order_follow_proposer_order() -> None:
    # The first proposer finishes last; references must still be in proposer order.
    slow = ScriptedChatModel(model_name="slow", reply="slow answer", delay_s=0.2)
    fast = ScriptedChatModel(model_name="fast", reply="fast answer")
    aggregator = ScriptedChatModel(model_name="agg", reply="done")
    state = build_moa_graph([[slow, fast], [slow, fast]], aggregator).invoke(
        {"messages": [HumanMessage("q")]}
    )
    assert len(slow.log) == 2
    assert len(fast.log) == 2
    assert len(aggregator.log) == 1
    assert [(c["layer"], c["node"]) for c in state["calls"]][-1] == (3, "aggregator")
    assert sorted((c["layer"], c["index"]) for c in state["calls"]) == [
        (1, 0), (1, 1), (2, 0), (2, 1), (3, 0)
    ]  # fmt: skip
    system = aggregator.log[0]["messages"][0].content
    assert system.index("1. slow answer") < system.index("2. fast answer")
    # Layer 2 starts only after all of layer 1 is done.
    assert min(m.log[1]["start"] for m in (slow, fast)) >= max(
        m.log[0]["end"] for m in (slow, fast)
    )
    assert state["answer"].content == "done"


def test_proposers_of_a_layer_run_concurrently_sync() -> None:
    proposers = _models("a", "b", "c", delay_s=0.3)
    graph = build_moa_graph([proposers], ScriptedChatModel(model_name="agg"))
    start = time.perf_counter()
    graph.invoke({"messages": [HumanMessage("q")]})
    assert time.perf_counter() - start < 0.6


async def test_proposers_of_a_layer_run_concurrently_async() -> None:
    proposers = _models("a", "b", "c", delay_s=0.3)
    graph = build_moa_graph([proposers], ScriptedChatModel(model_name="agg"))
    start = time.perf_counter()
    await graph.ainvoke({"messages": [HumanMessage("q")]})
    assert time.perf_counter() - start < 0.6


def test_failing_proposer_is_recorded_and_the_layer_goes_on() -> None:
    good = _models("good", "also-good")
    bad = ScriptedChatModel(model_name="bad", error="rate limited")
    aggregator = ScriptedChatModel(model_name="agg", reply="final")
    state = build_moa_graph([[good[0], bad, good[1]]], aggregator).invoke(
        {"messages": [HumanMessage("q")]}
    )
    failed = [c for c in state["calls"] if c["error"]]
    assert [(c["node"], c["error"], c["text"]) for c in failed] == [
        ("layer1/bad", "RuntimeError: rate limited", None)
    ]
    system = aggregator.log[0]["messages"][0].content
    assert system.endswith("\n1. answer from good\n2. answer from also-good")
    assert state["answer"].content == "final"


def test_empty_response_counts_as_a_failure() -> None:
    empty = ScriptedChatModel(model_name="empty", reply="  ")
    state = build_moa_graph(
        [[empty, *_models("good")]], ScriptedChatModel(model_name="agg")
    ).invoke({"messages": [HumanMessage("q")]})
    assert [c["error"] for c in state["calls"] if c["node"] == "layer1/empty"] == [
        "ValueError: empty response"
    ]


def test_too_few_proposers_raises_naming_each_failure() -> None:
    layer = [
        ScriptedChatModel(model_name="one", error="timeout after 30s"),
        ScriptedChatModel(model_name="two", error="HTTP 503"),
        *_models("three"),
    ]
    aggregator = ScriptedChatModel(model_name="agg")
    graph = build_moa_graph([layer], aggregator, min_proposers=2)
    with pytest.raises(LayerFailedError) as caught:
        graph.invoke({"messages": [HumanMessage("q")]})
    message = str(caught.value)
    assert "layer 1: 1 of 3 proposers succeeded, min_proposers is 2" in message
    assert "layer1/one: RuntimeError: timeout after 30s" in message
    assert "layer1/two: RuntimeError: HTTP 503" in message
    assert aggregator.log == []


def test_aggregator_failure_is_not_papered_over() -> None:
    aggregator = ScriptedChatModel(model_name="agg", error="aggregator down")
    graph = build_moa_graph([_models("a", "b")], aggregator)
    with pytest.raises(RuntimeError, match="aggregator down"):
        graph.invoke({"messages": [HumanMessage("q")]})


def test_secrets_in_errors_are_redacted() -> None:
    leaky = ScriptedChatModel(
        model_name="leaky", error="Incorrect API key provided: sk-abc123def456ghi789"
    )
    state = build_moa_graph([[leaky, *_models("ok")]], ScriptedChatModel(model_name="agg")).invoke(
        {"messages": [HumanMessage("q")]}
    )
    error = next(c["error"] for c in state["calls"] if c["error"])
    assert "sk-abc123" not in error
    assert "[redacted]" in error


def test_ranker_answers_with_the_chosen_response_verbatim() -> None:
    proposers = _models("a", "b", "c")
    ranker = ScriptedChatModel(model_name="judge", reply="The best is 2.")
    graph = build_moa_graph([proposers], ranker, aggregation="rank")
    state = graph.invoke({"messages": [HumanMessage("q")]})
    assert state["answer"].content == "answer from b"
    system = ranker.log[0]["messages"][0].content
    assert system == RANK_PROMPT + "\n1. answer from a\n2. answer from b\n3. answer from c"
    assert "select the single best response" in RANK_PROMPT
    final = state["calls"][-1]
    assert final["text"] == "The best is 2."
    assert final["error"] is None


def test_ranker_without_a_valid_number_takes_the_first_and_says_so() -> None:
    ranker = ScriptedChatModel(model_name="judge", reply="Response 7 is best")
    state = build_moa_graph([_models("a", "b")], ranker, aggregation="rank").invoke(
        {"messages": [HumanMessage("q")]}
    )
    assert state["answer"].content == "answer from a"
    assert state["calls"][-1]["error"] == (
        "ValueError: no response number 1-2 in the reply; took 1"
    )


def test_unknown_aggregation_is_an_error() -> None:
    with pytest.raises(ValueError, match="aggregation must be 'synthesize' or 'rank'"):
        build_moa_graph([_models("a")], ScriptedChatModel(), aggregation="vote")
