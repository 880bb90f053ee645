"""Every inner run nests under ChatMoA's run, in every way a caller runs it.

Modes: invoke, stream, ainvoke, astream, and ChatMoA inside an outer graph run
with invoke, ``stream_mode="updates"`` and sync and async
``stream_mode="messages"``; each with a tracer passed as a callback and with
one taken from the context (``collect_runs``). Inside the outer graph's
messages stream the answer's tokens show and no proposer draft does.
"""

import operator
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.messages import HumanMessage
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langchain_core.tracers.schemas import Run
from langgraph.graph import START, StateGraph

from langchain_moa import ChatMoA
from tests.unit_tests.scripted import ScriptedChatModel

ANSWER = "the final answer"
DRAFTS = ("draft one", "draft two")


def _moa() -> ChatMoA:
    proposers = [ScriptedChatModel(model_name=f"p{i}", reply=DRAFTS[i - 1]) for i in (1, 2)]
    aggregator = ScriptedChatModel(model_name="agg", reply=ANSWER)
    return ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)


class Outer(TypedDict):
    messages: Annotated[list, operator.add]


def _outer(moa: ChatMoA) -> Any:
    async def achat(state: Outer) -> dict:
        return {"messages": [await moa.ainvoke(state["messages"])]}

    def chat(state: Outer) -> dict:
        return {"messages": [moa.invoke(state["messages"])]}

    from langchain_core.runnables import RunnableLambda  # noqa: PLC0415

    node = RunnableLambda(chat, afunc=achat, name="chat")
    return StateGraph(Outer).add_node("chat", node).add_edge(START, "chat").compile()


QUESTION = [HumanMessage("q")]


def _invoke(moa: ChatMoA, config: dict) -> str:
    return moa.invoke(QUESTION, config).text


def _stream(moa: ChatMoA, config: dict) -> str:
    return "".join(chunk.text for chunk in moa.stream(QUESTION, config))


async def _ainvoke(moa: ChatMoA, config: dict) -> str:
    return (await moa.ainvoke(QUESTION, config)).text


async def _astream(moa: ChatMoA, config: dict) -> str:
    return "".join([chunk.text async for chunk in moa.astream(QUESTION, config)])


def _graph_invoke(moa: ChatMoA, config: dict) -> str:
    return _outer(moa).invoke({"messages": QUESTION}, config)["messages"][-1].text


def _graph_updates(moa: ChatMoA, config: dict) -> str:
    updates = list(_outer(moa).stream({"messages": QUESTION}, config, stream_mode="updates"))
    return updates[-1]["chat"]["messages"][-1].text


def _graph_messages(moa: ChatMoA, config: dict) -> str:
    stream = _outer(moa).stream({"messages": QUESTION}, config, stream_mode="messages")
    return "".join(chunk.text for chunk, _ in stream)


async def _agraph_messages(moa: ChatMoA, config: dict) -> str:
    stream = _outer(moa).astream({"messages": QUESTION}, config, stream_mode="messages")
    return "".join([chunk.text async for chunk, _ in stream])


MODES: dict[str, Callable] = {
    "invoke": _invoke,
    "stream": _stream,
    "ainvoke": _ainvoke,
    "astream": _astream,
    "graph-invoke": _graph_invoke,
    "graph-updates": _graph_updates,
    "graph-messages": _graph_messages,
    "graph-messages-async": _agraph_messages,
}


async def _run(mode: str, moa: ChatMoA, config: dict) -> str:
    result = MODES[mode](moa, config)
    return await result if hasattr(result, "__await__") else result


def _descendants(run: Run) -> list[Run]:
    found, stack = [], list(run.child_runs)
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(child.child_runs)
    return found


OUTER_RUNS = {"LangGraph", "chat"}
"""The outer graph's own runs. LangGraph (1.2) does not nest its nodes' runs
under its own for a tracer taken from the context, even with a plain model in
the node: langchain-core attaches such a tracer as a non-inheritable handler."""


def _check_nesting(roots: list[Run], mode: str, *, from_context: bool = False) -> None:
    with_chat_moa = [r for r in roots if any(d.name == "ChatMoA" for d in [r, *_descendants(r)])]
    assert len(with_chat_moa) == 1, mode
    others = {r.name for r in roots} - {with_chat_moa[0].name}
    if from_context and mode.startswith("graph"):
        assert others <= OUTER_RUNS, f"{mode}: stray roots {others}"
    else:
        assert not others, f"{mode}: stray roots {others}"
    everything = [with_chat_moa[0], *_descendants(with_chat_moa[0])]
    chat_moa = [run for run in everything if run.name == "ChatMoA"]
    assert len(chat_moa) == 1, mode
    inner = {run.name: run for run in _descendants(chat_moa[0])}
    # The graph, its nodes and every model call in it, all under ChatMoA's run.
    assert {"moa", "layer1/p1", "layer1/p2", "layer1/join", "aggregator"} <= set(inner), mode
    models = sorted(run.name for run in _descendants(chat_moa[0]) if run.run_type == "llm")
    assert models == ["aggregator", "layer1/p1", "layer1/p2"], mode
    graph = next(run for run in chat_moa[0].child_runs if run.name == "moa")
    assert graph.parent_run_id == chat_moa[0].id, mode


@pytest.mark.parametrize("mode", list(MODES))
async def test_a_tracer_passed_as_a_callback_sees_every_inner_run_nested(mode) -> None:
    tracer = RunCollectorCallbackHandler()
    answer = await _run(mode, _moa(), {"callbacks": [tracer]})
    assert answer == ANSWER, mode
    _check_nesting(tracer.traced_runs, mode)


@pytest.mark.parametrize("mode", list(MODES))
async def test_a_tracer_from_the_context_sees_every_inner_run_nested(mode) -> None:
    with collect_runs() as tracer:
        answer = await _run(mode, _moa(), {})
    assert answer == ANSWER, mode
    _check_nesting(tracer.traced_runs, mode, from_context=True)


@pytest.mark.parametrize("mode", ["graph-messages", "graph-messages-async"])
async def test_an_outer_messages_stream_shows_the_answer_and_no_draft(mode) -> None:
    tokens = []

    class Spy(BaseCallbackHandler):
        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            tokens.append(token)

    streamed = await _run(mode, _moa(), {"callbacks": [Spy()]})
    assert streamed == ANSWER
    # Token by token: the scripted aggregator streams word by word.
    assert "".join(tokens) == ANSWER
    assert len([t for t in tokens if t]) > 1
    for draft in DRAFTS:
        assert draft not in streamed
        assert draft not in "".join(tokens)


@pytest.mark.parametrize("mode", list(MODES))
async def test_a_token_counter_counts_each_call_once(mode) -> None:
    with get_usage_metadata_callback() as usage:
        await _run(mode, _moa(), {})
    # ChatMoA's answer carries the whole stack's usage; inner calls are not counted again.
    assert list(usage.usage_metadata) == ["moa-2l:agg"], mode
    # p1, p2 and the aggregator: words in, words out (see ScriptedChatModel).
    counted = usage.usage_metadata["moa-2l:agg"]
    assert counted["output_tokens"] == 2 + 2 + 3, mode


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream"])
async def test_handlers_given_to_chat_moa_itself_get_the_layer_events(mode) -> None:
    names = []

    class Events(BaseCallbackHandler):
        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            names.append((name, data["node"]))

    tracer = RunCollectorCallbackHandler()
    moa = _moa()
    moa.callbacks = [Events(), tracer]
    assert await _run(mode, moa, {}) == ANSWER
    assert ("moa_call_end", "layer1/p1") in names, mode
    assert ("moa_call_end", "aggregator") in names, mode
    _check_nesting(tracer.traced_runs, mode)
