"""Cost and scale: every answer's accounting, provider limits, and agents' fan-out."""

import asyncio
import threading
import time

import pytest
from langchain.agents import create_agent
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver

from langchain_moa import ChatMoA, LayerFailedError, get_accounting, get_calls
from langchain_moa.graph import compile_moa_graph
from langchain_moa.graph.throttle import ConcurrencyLimit, Throttles, shared_throttle
from langchain_moa.stacks import ProviderLimit, StackError
from tests.unit_tests.scripted import ScriptedChatModel

PRICES = {"p0": (1.0, 2.0), "p1": (3.0, 4.0), "agg": (5.0, 6.0)}
PARAMETERS = {"p0": 1.0, "p1": 8.0, "agg": 70.0}


def _moa(**kwargs) -> ChatMoA:
    proposers = [
        ScriptedChatModel(model_name=f"p{i}", reply=f"proposal {i}", delay_s=0.01 * (i + 1))
        for i in range(2)
    ]
    aggregator = ScriptedChatModel(model_name="agg", reply="the final answer here")
    return ChatMoA(proposers=proposers, aggregator=aggregator, layers=3, **kwargs)


def test_every_call_carries_its_cost_and_tflops_and_the_totals_add_up() -> None:
    answer = _moa(prices=PRICES, parameters=PARAMETERS).invoke("Why?")
    calls = get_calls(answer)
    assert len(calls) == 5
    for call in calls:
        usage, (per_in, per_out) = call["usage"], PRICES[call["model"]]
        assert usage is not None
        assert call["cost_usd"] == pytest.approx(
            (usage["input_tokens"] * per_in + usage["output_tokens"] * per_out) / 1e6
        )
        tokens = usage["input_tokens"] + usage["output_tokens"]
        assert call["tflops"] == pytest.approx(2 * PARAMETERS[call["model"]] * 1e9 * tokens / 1e12)
        assert call["ttft_s"] is None  # nothing was streamed
    accounting = get_accounting(answer)
    assert [layer["layer"] for layer in accounting["layers"]] == [1, 2, 3]
    for layer in accounting["layers"]:
        own = [c for c in calls if c["layer"] == layer["layer"]]
        assert layer["critical_path_s"] == max(c["latency_s"] for c in own)
        assert layer["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in own))
        assert layer["tflops"] == max(c["tflops"] for c in own)
        assert layer["calls"] == len(own)
    total = accounting["total"]
    assert total["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in calls))
    assert total["tflops"] == pytest.approx(sum(layer["tflops"] for layer in accounting["layers"]))
    assert total["critical_path_s"] == pytest.approx(
        sum(layer["critical_path_s"] for layer in accounting["layers"])
    )
    assert total["usage"] == {
        key: sum(c["usage"][key] for c in calls)
        for key in ("input_tokens", "output_tokens", "total_tokens")
    }
    assert answer.usage_metadata == total["usage"]
    assert total["calls"] == 5
    # The critical path cannot be longer than the wait.
    assert total["critical_path_s"] <= total["latency_s"]
    assert total["latency_s"] == answer.response_metadata["latency_s"]


def test_a_model_without_a_price_costs_none_never_zero() -> None:
    answer = _moa(prices={"p0": (1.0, 1.0)}).invoke("Why?")
    by_model = {c["model"]: c["cost_usd"] for c in get_calls(answer)}
    assert by_model["p0"] is not None
    assert by_model["p1"] is None
    assert get_accounting(answer)["total"]["cost_usd"] is None


def test_a_streamed_answer_reports_its_time_to_first_token() -> None:
    moa = _moa(prices=PRICES)
    *_, last = moa.stream("Why?")
    accounting = get_accounting(last)
    aggregator_call = get_calls(last)[-1]
    assert aggregator_call["ttft_s"] is not None
    assert 0 < aggregator_call["ttft_s"] <= aggregator_call["latency_s"]
    total = accounting["total"]
    assert total["ttft_s"] is not None
    # The answer's first token comes after both proposer layers.
    assert total["ttft_s"] >= sum(layer["critical_path_s"] for layer in accounting["layers"][:2])


def test_the_graphs_output_is_accounted_for_too() -> None:
    moa = _moa(prices=PRICES, parameters=PARAMETERS)
    state = moa.graph.invoke({"messages": [HumanMessage("Why?")]})
    accounting = get_accounting(state)
    assert accounting["total"]["calls"] == 5
    assert accounting["total"]["cost_usd"] == pytest.approx(
        sum(c["cost_usd"] for c in get_calls(state))
    )


def test_a_message_without_accounting_is_refused() -> None:
    with pytest.raises(ValueError, match="no MoA accounting"):
        get_accounting(AIMessage("hi"))


def test_bad_prices_and_limits_are_named() -> None:
    with pytest.raises(StackError, match="prices"):
        _moa(prices={"p0": "cheap"})
    with pytest.raises(StackError, match=r"max_concurency: unknown key \(did you mean"):
        _moa(provider_limits={"openai": {"max_concurency": 2}})
    with pytest.raises(StackError, match="max_concurrency"):
        _moa(provider_limits={"openai": {"max_concurrency": 0}})


# Provider limits


class _Holders:
    """How many hold a slot at once, and the most that ever did."""

    def __init__(self) -> None:
        self.now, self.peak, self.lock = 0, 0, threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def test_a_concurrency_limit_holds_across_threads_and_event_loops() -> None:
    limit, holders = ConcurrencyLimit(3), _Holders()

    def sync_worker() -> None:
        for _ in range(5):
            limit.acquire()
            holders.enter()
            time.sleep(0.002)
            holders.leave()
            limit.release()

    async def async_worker() -> None:
        for _ in range(5):
            await limit.aacquire()
            holders.enter()
            await asyncio.sleep(0.002)
            holders.leave()
            limit.release()

    async def many() -> None:
        await asyncio.gather(*(async_worker() for _ in range(6)))

    threads = [threading.Thread(target=sync_worker) for _ in range(4)]
    threads += [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert holders.peak == 3
    assert holders.now == 0
    # Every slot came back: all three can be taken at once again (a lost one would time out).

    async def take_all() -> None:
        for _ in range(3):
            await asyncio.wait_for(limit.aacquire(), timeout=5)

    asyncio.run(take_all())


async def test_a_cancelled_waiter_gives_its_place_up() -> None:
    limit = ConcurrencyLimit(1)
    await limit.aacquire()
    waiter = asyncio.create_task(limit.aacquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limit.release()
    await asyncio.wait_for(limit.aacquire(), timeout=1)


GAUGE = [0, 0]
"""Calls in flight across every ``_Counted`` model, and their peak."""


class _Counted(ScriptedChatModel):
    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        GAUGE[0] += 1
        GAUGE[1] = max(GAUGE[1], GAUGE[0])
        try:
            return await super()._agenerate(messages, stop, run_manager, **kwargs)
        finally:
            GAUGE[0] -= 1


async def test_concurrent_queries_never_send_a_provider_more_than_its_limit() -> None:
    GAUGE[:] = [0, 0]
    proposers = [_Counted(model_name=f"p{i}", reply="r", delay_s=0.01) for i in range(4)]
    aggregator = _Counted(model_name="agg", reply="answer", delay_s=0.01)
    moa = ChatMoA(
        proposers=proposers,
        aggregator=aggregator,
        layers=3,
        provider_limits={"_counted": {"max_concurrency": 3}},  # their ls_provider
    )
    answers = await moa.abatch([f"question {i}" for i in range(10)])
    assert all(a.text == "answer" for a in answers)
    assert GAUGE[1] == 3  # reached, never passed
    # Without the limit the same batch sends many more at once: the test can fail.
    GAUGE[:] = [0, 0]
    unlimited = ChatMoA(proposers=proposers, aggregator=aggregator, layers=3)
    await unlimited.abatch(["q"] * 10)
    assert GAUGE[1] > 3


def test_a_limit_names_a_model_by_its_base_url_or_its_provider(monkeypatch) -> None:
    # Built without a keepalive probe: it opens a socket, which unit tests refuse.
    monkeypatch.setenv("LANGCHAIN_OPENAI_TCP_KEEPALIVE", "0")
    model = ChatOpenAI(model="m", base_url="http://127.0.0.1:9/v1/", api_key="x")
    by_url = Throttles({"http://127.0.0.1:9/v1": ProviderLimit(max_concurrency=2)})
    assert by_url.for_model(model) is not None
    assert Throttles({"openai": ProviderLimit(max_concurrency=2)}).for_model(model) is not None
    assert Throttles({"together": ProviderLimit(max_concurrency=2)}).for_model(model) is None
    # The same limit for the same provider is one throttle for the whole process.
    again = Throttles({"http://127.0.0.1:9/v1/": ProviderLimit(max_concurrency=2)})
    assert again.for_model(model) is by_url.for_model(model)


# Agents: fan out once per user turn


@tool
def lookup(item: str) -> str:
    """Look an item up."""
    return f"{item}: found"


def _agent_models():
    def reply(messages):
        done = sum(isinstance(m, ToolMessage) for m in messages)
        if done < 3:
            call = {"name": "lookup", "args": {"item": f"i{done}"}, "id": f"call_{done}"}
            return AIMessage(content="", tool_calls=[call])
        return "all three found"

    proposers = [ScriptedChatModel(model_name=f"p{i}", reply=f"look up {i}") for i in range(3)]
    return proposers, ScriptedChatModel(model_name="agg", reply=reply)


@pytest.mark.parametrize(("fanout", "proposer_calls"), [("every_call", 4 * 6), ("per_turn", 6)])
def test_per_turn_fanout_runs_the_proposers_once_in_a_tool_loop(fanout, proposer_calls) -> None:
    proposers, aggregator = _agent_models()
    moa = ChatMoA(proposer_layers=[proposers, proposers], aggregator=aggregator, fanout=fanout)
    agent = create_agent(model=moa, tools=[lookup])
    result = agent.invoke({"messages": [HumanMessage("Find i0, i1 and i2.")]})
    assert result["messages"][-1].text == "all three found"
    assert [m.type for m in result["messages"]].count("tool") == 3
    assert sum(len(p.log) for p in proposers) == proposer_calls
    assert len(aggregator.log) == 4
    # Every aggregator call read the same references: the turn's.
    first = aggregator.log[0]["messages"][0].text
    assert all(call["messages"][0].text == first for call in aggregator.log)
    answers = [m for m in result["messages"] if m.type == "ai"]
    reused = [a.response_metadata["reused_references"] for a in answers]
    assert reused == ([False] * 4 if fanout == "every_call" else [False, True, True, True])


@pytest.mark.parametrize(
    "question",
    [HumanMessage("And again?"), ChatMessage(role="user", content="And again?")],
    ids=["human", "chat-message-user"],
)
def test_a_new_user_turn_runs_the_proposers_again(question) -> None:
    proposers, aggregator = _agent_models()
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2, fanout="per_turn")
    first = moa.invoke("Find i0.")
    conversation = [
        HumanMessage("Find i0."),
        first,
        ToolMessage("i0: found", tool_call_id="call_0"),
        AIMessage("noted"),
        question,
    ]
    assert not moa.invoke(conversation).response_metadata["reused_references"]
    assert sum(len(p.log) for p in proposers) == 6


def test_another_stacks_answer_is_not_reused() -> None:
    proposers, aggregator = _agent_models()
    other = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2, model_name="other")
    ours = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2, fanout="per_turn")
    first = other.invoke("Find i0.")
    step = [HumanMessage("Find i0."), first, ToolMessage("i0: found", tool_call_id="call_0")]
    assert not ours.invoke(step).response_metadata["reused_references"]


def test_reuse_left_in_a_thread_by_a_failed_run_is_not_another_turns() -> None:
    proposers, aggregator = _agent_models()
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)
    graph = compile_moa_graph(moa.stack, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    stale = {"turn": 1, "references": ["stale"], "nodes": ["layer1/p0"]}
    # The run fails in begin (the conversation ends with the assistant), keeping reuse.
    with pytest.raises(ValueError, match="ends with the assistant"):
        graph.invoke({"messages": [HumanMessage("q"), AIMessage("a")], "reuse": stale}, config)
    state = graph.invoke({"messages": [HumanMessage("Find i0.")]}, config)
    assert not state["reused"]
    assert sum(len(p.log) for p in proposers) == 3
    # The turn's own reuse is taken, and cleared for the next run.
    turn = len(graph.get_state(config).values["messages"]) + 1
    mine = {"turn": turn, "references": ["mine"], "nodes": ["layer1/p0"]}
    state = graph.invoke({"messages": [HumanMessage("again")], "reuse": mine}, config)
    assert state["reused"]
    assert "mine" in aggregator.log[-1]["messages"][0].text
    assert graph.get_state(config).values["reuse"] is None


class _RoleChunkFirst(ScriptedChatModel):
    """Streams an empty (role-only) chunk at once, as OpenAI-compatible servers do."""

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        yield ChatGenerationChunk(message=AIMessageChunk(content=""))
        async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
            yield chunk


async def test_time_to_first_token_skips_an_empty_first_chunk() -> None:
    aggregator = _RoleChunkFirst(model_name="agg", reply="late words", token_delay_s=0.2)
    moa = ChatMoA(proposers=[ScriptedChatModel(model_name="p")], aggregator=aggregator, layers=2)
    last = [chunk async for chunk in moa.astream("Why?")][-1]
    assert get_calls(last)[-1]["ttft_s"] >= 0.2


def test_a_sync_call_abandoned_while_waiting_for_its_slot_is_never_sent() -> None:
    waiter = ScriptedChatModel(model_name="waiter", reply="r")
    limit = ProviderLimit(max_concurrency=1)
    moa = ChatMoA(
        proposers=[waiter],
        aggregator=ScriptedChatModel(model_name="agg"),
        layers=2,
        timeout_s=0.15,
        provider_limits={"scriptedchatmodel": limit},
    )
    # Another query holds the provider's only slot past the call's timeout_s.
    held = shared_throttle("scriptedchatmodel", limit).concurrency
    assert held is not None
    held.acquire()
    try:
        with pytest.raises(LayerFailedError, match="timeout"):
            moa.invoke("Why?")
    finally:
        held.release()
    time.sleep(0.3)  # time enough for a late waiter to take the slot and call
    assert waiter.log == []
    # The slot is free again: the abandoned waiter left the queue.
    assert moa.invoke("Why?").text == "ok"


def test_limits_that_name_no_model_of_the_stack_are_refused() -> None:
    with pytest.raises(StackError, match=r"'scripted-typo' names none of the stack's models"):
        _moa(provider_limits={"scripted-typo": {"max_concurrency": 2}})
    with pytest.raises(StackError, match="give max_concurrency, requests_per_second or both"):
        _moa(provider_limits={"scriptedchatmodel": {}})
    with pytest.raises(StackError, match=r"prices.p0\[0\]: must not be negative"):
        _moa(prices={"p0": (-1.0, 1.0)})
