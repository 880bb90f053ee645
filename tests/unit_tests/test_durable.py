"""Durable ChatMoA in a checkpointed LangGraph run, and review before the aggregator.

Plumbing on scripted models and LangGraph's in-memory checkpointer; the same runs
on real databases, killed with SIGKILL, are ``tests/integration_tests/test_durable.py``.
A failure of the aggregator stands in for the crash here: the outer run stops
there, and is resumed with ``invoke(None, config)`` as after a restart.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from langchain_moa import AggregatorFailedError, ChatMoA, StackError, build_moa_graph
from langchain_moa.graph.human_review import (
    REVIEW_BEFORE,
    aedit_references,
    apending_review,
    edit_references,
    pending_review,
    reference_edits,
)
from tests.unit_tests.scripted import ScriptedChatModel

CONFIG = {"configurable": {"thread_id": "thread"}}


class Crash(BaseException):
    """The process dying mid-call: no node catches it, as none outlives a SIGKILL."""


class Models:
    """Scripted models whose every call is logged by name; one may fail or crash once."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failures: dict[str, int] = {}
        self.crashes: dict[str, int] = {}

    def model(self, name: str) -> ScriptedChatModel:
        def reply(messages: list[BaseMessage]) -> str:
            if self.crashes.get(name):
                self.crashes[name] -= 1
                time.sleep(0.3)  # the layer's other proposers finish first
                msg = f"{name}'s process died"
                raise Crash(msg)
            self.calls.append(name)
            question = messages[-1].text
            # A failure of this model's next call, or of its next call on one question.
            for key in (name, f"{name} on {question}"):
                if self.failures.get(key):
                    self.failures[key] -= 1
                    msg = f"{name} crashed"
                    raise RuntimeError(msg)
            if name.endswith("agg"):
                # What it read: the references in its system message.
                return f"{name} on {question!r} read: {messages[0].text.rsplit(':', 1)[-1]!r}"
            return f"{name} proposes for {question!r}"

        return ScriptedChatModel(model_name=name, reply=reply)

    def stack(self, prefix: str = "", **options: Any) -> ChatMoA:
        return ChatMoA(
            proposers=[self.model(f"{prefix}p{i}") for i in range(3)],
            aggregator=self.model(f"{prefix}agg"),
            **{"layers": 2, **options},
        )


def outer(
    node: Callable[[MessagesState], Any], *, checkpointer: Any = None, name: str = "answer"
) -> CompiledStateGraph:
    builder = StateGraph(MessagesState)
    builder.add_node(name, node)
    builder.add_edge(START, name)
    return builder.compile(checkpointer=InMemorySaver() if checkpointer is None else checkpointer)


def reviewed(models: Models, proposers: int) -> CompiledStateGraph:
    """The MoA graph itself, stopping before its aggregator."""
    return build_moa_graph(
        [[models.model(f"p{i}") for i in range(proposers)]],
        models.model("agg"),
        checkpointer=InMemorySaver(),
        interrupt_before=REVIEW_BEFORE,
    )


def answering(moa: ChatMoA) -> Callable[[MessagesState], dict]:
    def answer(state: MessagesState) -> dict:
        return {"messages": [moa.invoke(state["messages"])]}

    return answer


def test_a_resumed_thread_runs_only_what_had_not_finished() -> None:
    models = Models()
    moa = models.stack(durable=True)
    graph = outer(answering(moa))
    models.failures["agg"] = 1
    with pytest.raises(AggregatorFailedError, match="agg crashed"):
        graph.invoke({"messages": [HumanMessage("Why is the sky blue?")]}, CONFIG)
    assert sorted(models.calls) == ["agg", "p0", "p1", "p2"]

    state = graph.invoke(None, CONFIG)
    assert sorted(models.calls) == ["agg", "agg", "p0", "p1", "p2"]
    answer = state["messages"][-1]
    assert [m.type for m in state["messages"]] == ["human", "ai"]
    assert "p0 proposes" in answer.content
    assert "p2 proposes" in answer.content
    metadata = answer.response_metadata
    nodes = [call["node"] for layer in metadata["layers"] for call in layer]
    # The failed attempt was the crashed run's, never saved: only what answered.
    assert nodes == ["layer1/p0", "layer1/p1", "layer1/p2", "aggregator"]
    assert metadata["resumed_calls"] == 3
    assert answer.usage_metadata["total_tokens"] == sum(
        call["usage"]["total_tokens"] for layer in metadata["layers"] for call in layer
    )


def test_a_crash_mid_layer_runs_only_the_proposer_that_had_not_finished() -> None:
    models = Models()
    graph = outer(answering(models.stack(durable=True)))
    models.crashes["p2"] = 1
    with pytest.raises(Crash):
        graph.invoke({"messages": [HumanMessage("Why?")]}, CONFIG)
    assert sorted(models.calls) == ["p0", "p1"]
    state = graph.invoke(None, CONFIG)
    assert sorted(models.calls) == ["agg", "p0", "p1", "p2"]
    assert state["messages"][-1].response_metadata["resumed_calls"] == 2


def test_without_durable_a_resumed_thread_pays_the_proposers_again() -> None:
    models = Models()
    graph = outer(answering(models.stack()))
    models.failures["agg"] = 1
    with pytest.raises(AggregatorFailedError):
        graph.invoke({"messages": [HumanMessage("Why is the sky blue?")]}, CONFIG)
    state = graph.invoke(None, CONFIG)
    assert sorted(models.calls) == ["agg", "agg", "p0", "p0", "p1", "p1", "p2", "p2"]
    assert state["messages"][-1].response_metadata["resumed_calls"] == 0


async def test_async_runs_resume_the_same_way() -> None:
    models = Models()
    moa = models.stack(durable=True)

    async def answer(state: MessagesState) -> dict:
        return {"messages": [await moa.ainvoke(state["messages"])]}

    graph = outer(answer)
    models.failures["agg"] = 1
    with pytest.raises(AggregatorFailedError):
        await graph.ainvoke({"messages": [HumanMessage("Why is the sky blue?")]}, CONFIG)
    state = await graph.ainvoke(None, CONFIG)
    assert sorted(models.calls) == ["agg", "agg", "p0", "p1", "p2"]
    assert state["messages"][-1].response_metadata["resumed_calls"] == 3


def test_a_streamed_answer_resumes_and_streams_its_tokens() -> None:
    models = Models()
    moa = models.stack(durable=True, streaming=True)
    graph = outer(answering(moa))
    models.failures["agg"] = 1
    with pytest.raises(AggregatorFailedError):
        list(graph.stream({"messages": [HumanMessage("Why?")]}, CONFIG, stream_mode="messages"))
    tokens = [chunk.content for chunk, _ in graph.stream(None, CONFIG, stream_mode="messages")]
    assert sorted(models.calls) == ["agg", "agg", "p0", "p1", "p2"]
    answer = graph.get_state(CONFIG).values["messages"][-1]
    # The aggregator's tokens, as it wrote them, one word a chunk.
    assert len([t for t in tokens if t]) > 3
    assert answer.content.startswith("".join(t for t in tokens if isinstance(t, str))[:20])


def test_two_calls_in_one_node_keep_their_own_steps() -> None:
    models = Models()
    first, second = models.stack("a", durable=True), models.stack("b", durable=True)
    seen: list[str] = []

    def both(state: MessagesState) -> dict:
        one = first.invoke([HumanMessage("first question")])
        seen.append(one.content)
        two = second.invoke([HumanMessage("second question")])
        again = first.invoke([HumanMessage("third question")])
        return {"messages": [AIMessage(f"{one.content} | {two.content} | {again.content}")]}

    graph = outer(both)
    models.failures["bagg"] = 1
    with pytest.raises(AggregatorFailedError):
        graph.invoke({"messages": [HumanMessage("go")]}, CONFIG)
    assert models.calls.count("aagg") == 1
    models.calls.clear()

    state = graph.invoke(None, CONFIG)
    # The finished call is read back, not run; the second runs its aggregator alone;
    # the third, never started, runs whole.
    assert sorted(models.calls) == ["aagg", "ap0", "ap1", "ap2", "bagg"]
    assert seen[0] == seen[1]
    one, two, again = state["messages"][-1].content.split(" | ")
    assert "'first question'" in one
    assert "bp0 proposes for 'second question'" in two
    assert "ap0 proposes for 'third question'" in again
    assert "first question" not in again


def test_one_stack_in_two_nodes_keeps_each_nodes_steps() -> None:
    models = Models()
    moa = models.stack(durable=True)

    def asking(question: str) -> Callable[[MessagesState], dict]:
        def node(state: MessagesState) -> dict:
            return {"messages": [moa.invoke([HumanMessage(question)])]}

        return node

    builder = StateGraph(MessagesState)
    builder.add_node("north", asking("north?"))
    builder.add_node("south", asking("south?"))
    builder.add_edge(START, "north")
    builder.add_edge(START, "south")
    graph = builder.compile(checkpointer=InMemorySaver())
    models.failures["agg"] = 1  # one of the two fails, the other finishes
    with pytest.raises(AggregatorFailedError):
        graph.invoke({"messages": [HumanMessage("go")]}, CONFIG)
    assert models.calls.count("p0") == 2
    state = graph.invoke(None, CONFIG)
    assert models.calls.count("p0") == 2
    answers = sorted(m.content for m in state["messages"][1:])
    assert len(answers) == 2
    assert "on 'north?'" in answers[0]
    assert "for 'north?'" in answers[0]
    assert "for 'south?'" not in answers[0]
    assert "on 'south?'" in answers[1]
    assert "for 'north?'" not in answers[1]


def test_durable_outside_a_checkpointed_run_behaves_as_before() -> None:
    models = Models()
    moa = models.stack(durable=True)
    answer = moa.invoke("Why is the sky blue?")
    assert answer.response_metadata["resumed_calls"] == 0
    builder = StateGraph(MessagesState)
    builder.add_node("answer", answering(moa))
    builder.add_edge(START, "answer")
    state = builder.compile().invoke({"messages": [HumanMessage("Why?")]})
    assert state["messages"][-1].content
    assert sorted(models.calls) == ["agg", "agg", "p0", "p0", "p1", "p1", "p2", "p2"]


def test_review_needs_durable_and_a_checkpointed_run() -> None:
    models = Models()
    with pytest.raises(StackError, match=r"review_references.*needs durable=True"):
        models.stack(review_references=True)
    moa = models.stack(durable=True, review_references=True)
    with pytest.raises(ValueError, match="graph compiled with a checkpointer"):
        moa.invoke("Why?")
    assert models.calls == []


def test_review_in_an_outer_graph_edits_a_reference_then_calls_only_the_aggregator() -> None:
    models = Models()
    moa = models.stack(durable=True, review_references=True)
    graph = outer(answering(moa))
    graph.invoke({"messages": [HumanMessage("Why is the sky blue?")]}, CONFIG)
    assert sorted(models.calls) == ["p0", "p1", "p2"]
    assert graph.get_state(CONFIG).next == ("answer",)

    assert pending_review(graph, CONFIG) is None, "LangGraph cannot see into a model call"
    review = pending_review(graph, CONFIG, moa=moa.graph)
    assert review is not None
    assert list(review.references) == ["layer1/p0", "layer1/p1", "layer1/p2"]
    edit_references(review, {"layer1/p1": "Rayleigh scattering.", "layer1/p2": None})

    state = graph.invoke(None, CONFIG)
    assert sorted(models.calls) == ["agg", "p0", "p1", "p2"]
    answer = state["messages"][-1]
    assert "Rayleigh scattering." in answer.content
    assert "p2 proposes" not in answer.content
    final = answer.response_metadata["layers"][-1][0]
    assert final["references"] == ["layer1/p0", "layer1/p1"]
    assert final["edited_references"] == [
        {"node": "layer1/p1", "edit": "edited"},
        {"node": "layer1/p2", "edit": "dropped"},
    ]
    assert pending_review(graph, CONFIG, moa=moa.graph) is None


def test_review_of_the_moa_graph_itself_by_update_state() -> None:
    models = Models()
    graph = reviewed(models, 3)
    graph.invoke({"messages": [HumanMessage("Why?")]}, CONFIG)
    state = graph.get_state(CONFIG)
    assert state.next == ("aggregator",)
    # Plain update_state, as Studio's state editor sends it: an edit, a new one, an order.
    nodes = ["layer1/p2", "human", "layer1/p0"]
    texts = [state.values["references"][2], "A reviewer's note.", "Edited by hand."]
    graph.update_state(CONFIG, {"references": texts, "reference_nodes": nodes})
    result = graph.invoke(None, CONFIG)
    assert sorted(models.calls) == ["agg", "p0", "p1", "p2"]
    final = result["calls"][-1]
    assert final["references"] == nodes
    assert final["edited_references"] == [
        {"node": "human", "edit": "added"},
        {"node": "layer1/p0", "edit": "edited"},
        {"node": "layer1/p1", "edit": "dropped"},
    ]
    # The next turn on the thread stops again, and reports no edits unless made.
    graph.invoke({"messages": [HumanMessage("And at sunset?")]}, CONFIG)
    assert graph.get_state(CONFIG).next == ("aggregator",)
    assert "edited_references" not in graph.invoke(None, CONFIG)["calls"][-1]


async def test_async_review() -> None:
    models = Models()
    graph = reviewed(models, 2)
    await graph.ainvoke({"messages": [HumanMessage("Why?")]}, CONFIG)
    review = await apending_review(graph, CONFIG)
    assert review is not None
    await aedit_references(review, {"layer1/p0": None})
    result = await graph.ainvoke(None, CONFIG)
    assert result["calls"][-1]["edited_references"] == [{"node": "layer1/p0", "edit": "dropped"}]
    assert await asyncio.to_thread(pending_review, graph, CONFIG) is None


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"layer1/p9": "x"}, r"no reference was written by 'layer1/p9'.*layer1/p0"),
        ({"layer1/p0": 3}, "new text or None"),
        ({"layer1/p0": None, "layer1/p1": None}, "every reference would be dropped"),
    ],
)
def test_bad_edits_are_refused_and_change_nothing(edits: dict, message: str) -> None:
    models = Models()
    graph = reviewed(models, 2)
    graph.invoke({"messages": [HumanMessage("Why?")]}, CONFIG)
    review = pending_review(graph, CONFIG)
    assert review is not None
    with pytest.raises(ValueError, match=message):
        edit_references(review, edits)
    assert pending_review(graph, CONFIG) == review


def test_reference_edits_ignore_reused_and_filtered_references() -> None:
    call = {"turn": 1, "layer": 1, "error": None}
    calls = [
        {**call, "node": "layer1/a", "text": "A"},
        {**call, "node": "layer1/b", "text": "B"},
        {**call, "node": "layer1/c", "text": None, "error": "boom"},
    ]
    state = {
        "messages": [HumanMessage("q")],
        "calls": calls,
        "references": ["A"],
        "reference_nodes": ["layer1/a"],
        "dropped": [{"turn": 1, "layer": 1, "node": "layer1/b", "why": "cluster filter"}],
    }
    assert reference_edits(state) == []
    assert reference_edits({**state, "dropped": []}) == [{"node": "layer1/b", "edit": "dropped"}]
    assert reference_edits({**state, "dropped": [], "reused": True}) == []


@pytest.mark.parametrize(
    ("strategy", "layers"),
    [
        ("synthesize", 3),
        ("rank-then-synthesize", 2),
        ({"name": "self-moa-seq", "window": 2, "samples": 4}, 2),
        ({"name": "staircase", "step_tokens": 2}, 2),
        ({"name": "staircase", "step_tokens": 2}, 3),
    ],
    ids=["synthesize", "rank-then-synthesize", "self-moa-seq", "staircase", "staircase-3"],
)
def test_no_edits_are_reported_where_no_one_edited(strategy: Any, layers: int) -> None:
    # Some aggregators read the references a window at a time, or a last layer they
    # stream themselves: what their own steps read is not an edit.
    models = Models()
    moa = models.stack(strategy=strategy, layers=layers)
    answer = moa.invoke("Why is the sky blue?")
    calls = [call for layer in answer.response_metadata["layers"] for call in layer]
    assert len(calls) > 3
    assert [c for c in calls if "edited_references" in c] == []


def test_a_stop_before_a_staircase_aggregator_is_refused() -> None:
    models = Models()
    with pytest.raises(StackError, match="staircase strategy runs its last proposer layer"):
        models.stack(durable=True, review_references=True, strategy="staircase")


def test_calls_resumed_in_another_order_never_take_each_others_answers() -> None:
    # Calls a node makes at once (batch, gather) start in no fixed order; here the
    # resumed node asks in the other order outright.
    models = Models()
    moa = models.stack(durable=True)
    order = ["north?", "south?"]

    def both(state: MessagesState) -> dict:
        answers = {q: moa.invoke([HumanMessage(q)]).content for q in list(order)}
        return {"messages": [AIMessage(" | ".join(answers[q] for q in sorted(answers)))]}

    graph = outer(both)
    models.failures["agg on south?"] = 1  # north is answered, then south fails
    with pytest.raises(AggregatorFailedError):
        graph.invoke({"messages": [HumanMessage("go")]}, CONFIG)
    order.reverse()
    state = graph.invoke(None, CONFIG)
    north, south = state["messages"][-1].content.split(" | ")
    assert "on 'north?'" in north
    assert "for 'south?'" not in north
    assert "on 'south?'" in south
    assert "for 'north?'" not in south


def test_references_and_their_nodes_must_change_together() -> None:
    models = Models()
    graph = reviewed(models, 3)
    graph.invoke({"messages": [HumanMessage("Why?")]}, CONFIG)
    references = graph.get_state(CONFIG).values["references"]
    graph.update_state(CONFIG, {"references": references[:2]})
    with pytest.raises(ValueError, match=r"2 references but 3 reference_nodes.*update both"):
        pending_review(graph, CONFIG)
    with pytest.raises(ValueError, match="update both"):
        graph.invoke(None, CONFIG)
    assert "agg" not in models.calls


async def test_async_review_of_a_durable_call_on_an_async_checkpointer() -> None:
    models = Models()
    moa = models.stack(durable=True, review_references=True)

    async def answer(state: MessagesState) -> dict:
        return {"messages": [await moa.ainvoke(state["messages"])]}

    async with AsyncSqliteSaver.from_conn_string(":memory:") as checkpointer:
        graph = outer(answer, checkpointer=checkpointer)
        await graph.ainvoke({"messages": [HumanMessage("Why?")]}, CONFIG)
        review = await apending_review(graph, CONFIG, moa=moa.graph)
        assert review is not None
        assert list(review.references) == ["layer1/p0", "layer1/p1", "layer1/p2"]
        await aedit_references(review, {"layer1/p0": "Because of Rayleigh scattering."})
        state = await graph.ainvoke(None, CONFIG)
    assert sorted(models.calls) == ["agg", "p0", "p1", "p2"]
    final = state["messages"][-1].response_metadata["layers"][-1][0]
    assert final["edited_references"] == [{"node": "layer1/p0", "edit": "edited"}]


DIGEST = """
import sys
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_moa import ChatMoA
from langchain_moa.graph.state import MoAInput
from tests.unit_tests.scripted import ScriptedChatModel

@tool
def lookup(item: str) -> str:
    '''Look an item up.'''
    return item

moa = ChatMoA(
    proposers=[ScriptedChatModel(model_name="p0"), ScriptedChatModel(model_name="p1")],
    aggregator=ScriptedChatModel(model_name="agg"),
    layers=2,
    durable=True,
    prompt=lambda given: [("system", "Read these."), *given["messages"]],
)
asked = MoAInput(messages=[HumanMessage("Why?", id="m1")], tools=[lookup], tool_choice=None)
print(moa._call_digest(asked, {"moa_aggregator_kwargs": {}}))
"""


def test_a_call_is_saved_under_the_same_name_in_every_process() -> None:
    # A resumed run is another process: a memory address in the digest (a callable
    # prompt's, a raw tool's function's) would lose every saved step.
    root = Path(__file__).parents[2]
    digests = {
        subprocess.run(
            [sys.executable, "-c", DIGEST],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(digests) == 1
    assert len(next(iter(digests))) == 16


def test_review_of_a_durable_call_a_level_down() -> None:
    # The node calling ChatMoA runs inside a graph that is itself a node (an agent, say).
    models = Models()
    moa = models.stack(durable=True, review_references=True)
    agent = StateGraph(MessagesState)
    agent.add_node("answer", answering(moa))
    agent.add_edge(START, "answer")
    inner = agent.compile()  # checkpointed as the outer graph's subgraph
    builder = StateGraph(MessagesState)
    builder.add_node("agent", inner)
    builder.add_edge(START, "agent")
    graph = builder.compile(checkpointer=InMemorySaver())
    graph.invoke({"messages": [HumanMessage("Why?")]}, CONFIG)
    review = pending_review(graph, CONFIG, moa=moa.graph)
    assert review is not None
    edit_references(review, {"layer1/p2": None})
    state = graph.invoke(None, CONFIG)
    assert sorted(models.calls) == ["agg", "p0", "p1", "p2"]
    final = state["messages"][-1].response_metadata["layers"][-1][0]
    assert final["edited_references"] == [{"node": "layer1/p2", "edit": "dropped"}]
