"""The graph's shape, scheduling and failure handling."""

import time

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver

from langchain_moa import ChatMoA, LayerFailedError, StackError, build_moa_graph, get_calls
from langchain_moa.graph import AGGREGATOR_NODE, RANK_PROMPT, PromptInput
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
        "begin",
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
    assert ("__start__", "begin") in edges
    assert ("begin", "layer1/qwen-72b") in edges
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
        "BadResponseError: empty response"
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
    assert "layer1/one: other: RuntimeError: timeout after 30s" in message
    assert "layer1/two: other: RuntimeError: HTTP 503" in message
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
    graph = build_moa_graph([proposers], ranker, strategy="rank")
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
    state = build_moa_graph([_models("a", "b")], ranker, strategy="rank").invoke(
        {"messages": [HumanMessage("q")]}
    )
    assert state["answer"].content == "answer from a"
    assert state["calls"][-1]["error"] == (
        "ValueError: no response number 1-2 in the reply; took 1"
    )


def test_unknown_aggregation_is_an_error() -> None:
    with pytest.raises(
        StackError,
        match=r"^strategy: unknown strategy .vote.; choose from rank, rank-then-synthesize, "
        r"self-moa, self-moa-seq, staircase, synthesize$",
    ):
        build_moa_graph([_models("a")], ScriptedChatModel(), strategy="vote")


@pytest.mark.parametrize(
    ("layers", "options", "message"),
    [
        ([], {}, "proposer_layers: empty: give at least one layer of proposers"),
        ([["A"], []], {}, "proposer_layers[1]: empty: every layer needs a proposer"),
        ([["A", 42]], {}, "proposer_layers[0][1]: expected a model string or table, got 42"),
        (["A"], {}, "proposer_layers[0]: expected a list, got a ScriptedChatModel"),
        ([["A"]], {"min_proposers": 2}, "min_proposers: 2 is more than the smallest layer's 1"),
        ([["A"]], {"min_proposers": 0}, "min_proposers: must be at least 1, got 0"),
        ([["gpt-4o"]], {}, "proposer_layers[0][0].model: expected 'provider:model'"),
    ],
)
def test_graph_stacks_are_checked_as_specs_are(layers, options, message) -> None:
    model = ScriptedChatModel(model_name="a")
    layers = [
        [model if m == "A" else m for m in layer] if layer != "A" else model for layer in layers
    ]
    with pytest.raises(StackError) as caught:
        build_moa_graph(layers, ScriptedChatModel(model_name="agg"), **options)
    assert str(caught.value).startswith(message)


def test_entries_may_be_model_strings(monkeypatch) -> None:
    monkeypatch.setenv("LANGCHAIN_OPENAI_TCP_KEEPALIVE", "0")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-used")
    graph = build_moa_graph([["openai:gpt-4o-mini", {"model": "openai:o3-mini"}]], "openai:gpt-4o")
    assert {"layer1/gpt-4o-mini", "layer1/o3-mini", "aggregator"} <= set(graph.get_graph().nodes)


def test_input_and_output_schemas() -> None:
    graph = build_moa_graph([_models("a")], ScriptedChatModel(model_name="agg"))
    given = graph.get_input_jsonschema()
    assert set(given["properties"]) == {"messages", "tools", "tool_choice", "reuse"}
    assert given["required"] == ["messages"]
    returned = graph.get_output_jsonschema()
    outputs = {
        *("messages", "answer", "calls", "dropped", "reused"),
        *("stopped", "ranking", "shuffle_seed"),
    }
    assert set(returned["properties"]) == outputs
    state = graph.invoke({"messages": [HumanMessage("q")]})
    assert set(state) == outputs
    assert state["messages"][-1] == state["answer"]


# A prompt may be a callable or a Runnable returning the messages to send.


def _prompt_stack():
    layer1 = [ScriptedChatModel(model_name=f"a{i}", reply=f"first {i}") for i in (1, 2)]
    layer2 = [ScriptedChatModel(model_name=f"b{i}", reply=f"second {i}") for i in (1, 2)]
    return layer1, layer2, ScriptedChatModel(model_name="agg", reply="final")


def _texts(log_entry) -> list[str]:
    return [m.text for m in log_entry["messages"]]


def test_a_callable_prompt_reaches_later_layers_and_the_aggregator() -> None:
    layer1, layer2, aggregator = _prompt_stack()

    def prompt(given: PromptInput):
        refs = given["numbered_references"].replace("\n", " | ")
        return [SystemMessage(f"layer {given['layer']}: {refs}"), *given["messages"]]

    state = build_moa_graph([layer1, layer2], aggregator, prompt=prompt).invoke(
        {"messages": [HumanMessage("q")]}
    )
    assert state["answer"].content == "final"
    assert [_texts(m.log[0]) for m in layer1] == [["q"], ["q"]]
    for model in layer2:
        assert _texts(model.log[0]) == ["layer 2: 1. first 1 | 2. first 2", "q"]
    assert _texts(aggregator.log[0]) == ["layer 3: 1. second 1 | 2. second 2", "q"]


def test_a_runnable_prompt_reaches_later_layers_and_the_aggregator() -> None:
    layer1, layer2, aggregator = _prompt_stack()
    template = ChatPromptTemplate.from_messages(
        [("system", "Improve on:\n{numbered_references}"), ("placeholder", "{messages}")]
    )
    build_moa_graph([layer1, layer2], aggregator, prompt=template).invoke(
        {"messages": [HumanMessage("q")]}
    )
    assert [_texts(m.log[0]) for m in layer1] == [["q"], ["q"]]
    for model in layer2:
        assert _texts(model.log[0]) == ["Improve on:\n1. first 1\n2. first 2", "q"]
    assert _texts(aggregator.log[0]) == ["Improve on:\n1. second 1\n2. second 2", "q"]
    # Any Runnable: here one that keeps only the references.
    layer1, layer2, aggregator = _prompt_stack()
    only_refs = RunnableLambda(lambda given: [HumanMessage(" / ".join(given["references"]))])
    build_moa_graph([layer1], aggregator, prompt=only_refs).invoke(
        {"messages": [HumanMessage("q")]}
    )
    assert _texts(aggregator.log[0]) == ["first 1 / first 2"]


def test_a_prompt_for_the_ranker_replaces_the_rank_prompt() -> None:
    ranker = ScriptedChatModel(model_name="judge", reply="2")
    graph = build_moa_graph([_models("a", "b")], ranker, strategy="rank", prompt="Choose:")
    state = graph.invoke({"messages": [HumanMessage("q")]})
    assert ranker.log[0]["messages"][0].content == "Choose:\n1. answer from a\n2. answer from b"
    assert state["answer"].content == "answer from b"


# Compile options pass through to StateGraph.compile.


def test_the_graph_is_named() -> None:
    agg = ScriptedChatModel(model_name="agg")
    assert build_moa_graph([_models("a")], agg).name == "moa"
    assert build_moa_graph([_models("a")], agg, name="my-moa").name == "my-moa"


def test_a_checkpointer_keeps_a_thread_and_get_calls_reads_its_last_turn() -> None:
    aggregator = ScriptedChatModel(model_name="agg", reply="final")
    graph = build_moa_graph([_models("a", "b")], aggregator, checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    graph.invoke({"messages": [HumanMessage("first question")]}, thread)
    state = graph.invoke({"messages": [HumanMessage("second question")]}, thread)
    assert [m.text for m in state["messages"]] == [
        "first question",
        "final",
        "second question",
        "final",
    ]
    # The aggregator of turn 2 read the whole conversation.
    assert [m.text for m in aggregator.log[1]["messages"][1:]] == [
        "first question",
        "final",
        "second question",
    ]
    assert sorted({c["turn"] for c in state["calls"]}) == [1, 3]
    assert len(state["calls"]) == 6
    last = get_calls(state)
    assert [(c["turn"], c["node"]) for c in last] == [
        (3, "layer1/a"),
        (3, "layer1/b"),
        (3, "aggregator"),
    ]


def test_interrupt_before_the_aggregator_and_resume() -> None:
    aggregator = ScriptedChatModel(model_name="agg", reply="final")
    graph = build_moa_graph(
        [_models("a", "b")],
        aggregator,
        checkpointer=InMemorySaver(),
        interrupt_before=[AGGREGATOR_NODE],
    )
    thread = {"configurable": {"thread_id": "t"}}
    graph.invoke({"messages": [HumanMessage("q")]}, thread)
    paused = graph.get_state(thread)
    assert paused.next == (AGGREGATOR_NODE,)
    assert paused.values["references"] == ["answer from a", "answer from b"]
    assert aggregator.log == []
    state = graph.invoke(None, thread)
    assert state["answer"].content == "final"
    assert len(aggregator.log) == 1


def test_aggregator_options_come_from_the_config_not_the_state() -> None:
    proposers = _models("a", "b")
    aggregator = ScriptedChatModel(model_name="agg")
    graph = build_moa_graph([proposers], aggregator)
    config = {"configurable": {"moa_aggregator_kwargs": {"stop": ["END"]}}}
    state = graph.invoke({"messages": [HumanMessage("q")]}, config)
    assert aggregator.log[0]["kwargs"]["stop"] == ["END"]
    assert all(p.log[0]["kwargs"]["stop"] is None for p in proposers)
    assert "aggregator_kwargs" not in state


TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


def test_tool_choice_is_a_call_option_like_the_others_and_the_tools_are_state() -> None:
    proposers = _models("a", "b")
    aggregator = ScriptedChatModel(model_name="agg")
    graph = build_moa_graph([proposers], aggregator)
    choice = {"type": "function", "function": {"name": "weather"}}
    config = {"configurable": {"moa_aggregator_kwargs": {"tool_choice": choice, "stop": ["X"]}}}
    graph.invoke({"messages": [HumanMessage("q")], "tools": [TOOL]}, config)
    kwargs = aggregator.log[0]["kwargs"]
    assert (kwargs["tools"], kwargs["tool_choice"], kwargs["stop"]) == ([TOOL], choice, ["X"])
    # Proposers get neither the tools bound nor the aggregator's choice.
    assert all("tool_choice" not in p.log[0]["kwargs"] for p in proposers)


def test_tool_choice_in_the_input_still_works_and_says_it_is_deprecated() -> None:
    aggregator = ScriptedChatModel(model_name="agg")
    graph = build_moa_graph([_models("a")], aggregator)
    given = {"messages": [HumanMessage("q")], "tools": [TOOL], "tool_choice": "required"}
    with pytest.warns(DeprecationWarning, match="moa_aggregator_kwargs"):
        graph.invoke(given)
    assert aggregator.log[0]["kwargs"]["tool_choice"] == "required"


# get_calls: one answer's call records, layer by layer, in proposer order.


def test_get_calls_on_graph_output_is_in_layer_and_proposer_order() -> None:
    slow = ScriptedChatModel(model_name="slow", reply="slow answer", delay_s=0.2)
    fast = ScriptedChatModel(model_name="fast", reply="fast answer")
    state = build_moa_graph([[slow, fast], [slow, fast]], ScriptedChatModel(model_name="g")).invoke(
        {"messages": [HumanMessage("q")]}
    )
    # Completion order puts the fast proposer first; get_calls does not.
    assert [c["node"] for c in state["calls"]][:2] == ["layer1/fast", "layer1/slow"]
    assert [c["node"] for c in get_calls(state)] == [
        "layer1/slow",
        "layer1/fast",
        "layer2/slow",
        "layer2/fast",
        "aggregator",
    ]


def test_get_calls_on_a_chat_moa_answer() -> None:
    moa = ChatMoA(proposers=_models("a", "b"), aggregator=ScriptedChatModel(model_name="g"))
    answer = moa.invoke("q")
    calls = get_calls(answer)
    assert [(c["layer"], c["node"]) for c in calls] == [
        (1, "layer1/a"),
        (1, "layer1/b"),
        (2, "layer2/a"),
        (2, "layer2/b"),
        (3, "aggregator"),
    ]
    assert calls[-1]["text"] == answer.content
    streamed = None
    for chunk in moa.stream("q"):
        streamed = chunk if streamed is None else streamed + chunk
    assert [c["node"] for c in get_calls(streamed)] == [c["node"] for c in calls]


def test_get_calls_needs_call_records() -> None:
    with pytest.raises(ValueError, match="carries no MoA call records"):
        get_calls(AIMessage("plain"))
    with pytest.raises(ValueError, match="carries no MoA call records"):
        get_calls({"messages": []})
    assert get_calls({"calls": []}) == []


@pytest.mark.parametrize("strategy", ["synthesize", "rank-then-synthesize"])
async def test_without_langgraph_s_private_node_class_the_graph_still_runs(
    monkeypatch, strategy
) -> None:
    # A langgraph release that moves RunnableCallable: nodes fall back to RunnableLambda.
    from langchain_moa.graph import runnable  # noqa: PLC0415

    monkeypatch.setattr(runnable, "RunnableCallable", None)
    proposers = [ScriptedChatModel(model_name=n, reply=f"from {n}") for n in ("a", "b")]
    aggregator = ScriptedChatModel(model_name="agg", reply="answer")
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2, strategy=strategy)
    kinds = {type(spec.runnable).__name__ for spec in moa.graph.builder.nodes.values()}
    assert kinds == {"RunnableLambda"}
    assert moa.invoke("q").text == "answer"
    assert (await moa.ainvoke("q")).text == "answer"
    assert [call["node"] for call in get_calls(moa.invoke("q"))][-1] == AGGREGATOR_NODE
