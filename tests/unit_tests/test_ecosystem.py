"""ChatMoA with tools, agents, structured output, events and inside other graphs."""

import operator
from typing import Annotated, TypedDict

from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from pydantic import BaseModel

from langchain_moa import ChatMoA, build_moa_graph
from langchain_moa.graph import CALL_END, CALL_ERROR, CALL_START
from tests.unit_tests.scripted import ScriptedChatModel


@tool
def get_weather(city: str) -> str:
    """Get the weather in a city."""
    return f"Sunny in {city}."


def _weather_aggregator():
    def reply(messages):
        if isinstance(messages[-1], ToolMessage):
            return f"The weather: {messages[-1].text}"
        call = {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}
        return AIMessage(content="", tool_calls=[call])

    return ScriptedChatModel(model_name="agg", reply=reply)


def _proposers():
    return [ScriptedChatModel(model_name=f"p{i}", reply=f"use get_weather {i}") for i in (1, 2)]


def test_aggregator_gets_tools_and_proposers_read_them_as_text() -> None:
    proposers, aggregator = _proposers(), _weather_aggregator()
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2).bind_tools([get_weather])
    message = moa.invoke("What is the weather in Paris?")
    assert message.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}
    ]
    bound = aggregator.log[0]["kwargs"]["tools"]
    assert [t["function"]["name"] for t in bound] == ["get_weather"]
    system = proposers[0].log[0]["messages"][0]
    assert system.type == "system"
    assert "- get_weather(" in system.text
    assert "Get the weather in a city." in system.text
    assert "tools" not in proposers[0].log[0]["kwargs"]


def test_tool_turns_reach_proposers_as_text_and_the_aggregator_as_they_are() -> None:
    proposers, aggregator = _proposers(), _weather_aggregator()
    moa = ChatMoA(proposers=proposers, aggregator=aggregator, layers=2).bind_tools([get_weather])
    conversation = [
        HumanMessage("Weather in Paris?"),
        AIMessage(
            content="", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]
        ),
        ToolMessage("Sunny in Paris.", tool_call_id="c1"),
    ]
    assert moa.invoke(conversation).content == "The weather: Sunny in Paris."
    seen = proposers[0].log[0]["messages"]
    assert [m.type for m in seen] == ["system", "human", "ai", "human"]
    assert seen[2].text == '[called get_weather with {"city": "Paris"}]'
    assert seen[3].text == "[get_weather returned] Sunny in Paris."
    given = aggregator.log[0]["messages"]
    assert [m.type for m in given] == ["system", "human", "ai", "tool"]


def test_create_agent_runs_a_full_tool_loop() -> None:
    agent = create_agent(
        model=ChatMoA(proposers=_proposers(), aggregator=_weather_aggregator(), layers=2),
        tools=[get_weather],
    )
    result = agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]})
    kinds = [m.type for m in result["messages"]]
    assert kinds == ["human", "ai", "tool", "ai"]
    assert result["messages"][2].text == "Sunny in Paris."
    assert result["messages"][-1].text == "The weather: Sunny in Paris."


def test_streamed_tool_calls_merge_into_a_tool_call() -> None:
    moa = ChatMoA(proposers=_proposers(), aggregator=_weather_aggregator(), layers=2)
    merged = None
    for chunk in moa.bind_tools([get_weather]).stream("Weather?"):
        merged = chunk if merged is None else merged + chunk
    assert merged.tool_calls[0]["name"] == "get_weather"
    assert merged.tool_calls[0]["args"] == {"city": "Paris"}


class Person(BaseModel):
    name: str
    age: int


def test_with_structured_output_returns_the_schema_type() -> None:
    def reply(messages):
        call = {"name": "Person", "args": {"name": "Ada", "age": 36}, "id": "s1"}
        return AIMessage(content="", tool_calls=[call])

    aggregator = ScriptedChatModel(model_name="agg", reply=reply)
    moa = ChatMoA(proposers=_proposers(), aggregator=aggregator, layers=2)
    person = moa.with_structured_output(Person).invoke("Ada Lovelace was 36.")
    assert person == Person(name="Ada", age=36)
    # One tool that must be called is named, as more servers understand.
    assert aggregator.log[0]["kwargs"]["tool_choice"] == {
        "type": "function",
        "function": {"name": "Person"},
    }


def test_layer_events_arrive_before_the_aggregator_starts() -> None:
    proposers = [*_proposers(), ScriptedChatModel(model_name="bad", error="down")]
    moa = ChatMoA(proposers=proposers, aggregator=ScriptedChatModel(model_name="agg"), layers=2)
    events = list(moa.graph.stream({"messages": [HumanMessage("q")]}, stream_mode="custom"))
    names = [(e["event"], e["node"]) for e in events]
    aggregator_start = names.index((CALL_START, "aggregator"))
    for node in ("layer1/p1", "layer1/p2"):
        assert names.index((CALL_START, node)) < names.index((CALL_END, node)) < aggregator_start
    assert names.index((CALL_ERROR, "layer1/bad")) < aggregator_start
    finished = next(e for e in events if e["event"] == CALL_END and e["node"] == "layer1/p1")
    assert finished["text"] == "use get_weather 1"
    assert finished["usage"]["output_tokens"] == 3
    assert finished["latency_s"] >= 0
    failed = next(e for e in events if e["event"] == CALL_ERROR)
    assert failed["error"] == "RuntimeError: down"


async def test_layer_events_in_astream_events() -> None:
    moa = ChatMoA(proposers=_proposers(), aggregator=ScriptedChatModel(model_name="agg"), layers=2)
    events = [
        (e["name"], e["data"]["node"])
        async for e in moa.astream_events("q", version="v2")
        if e["event"] == "on_custom_event"
    ]
    assert (CALL_END, "layer1/p1") in events
    assert events[-1] == (CALL_END, "aggregator")


def _all_runs(tracer: RunCollectorCallbackHandler) -> list:
    runs, stack = [], list(tracer.traced_runs)
    while stack:
        run = stack.pop()
        runs.append(run)
        stack.extend(run.child_runs)
    return runs


def test_traces_nest_the_graph_under_chat_moa_with_runs_named_for_nodes() -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    for call in ("invoke", "stream"):
        tracer = RunCollectorCallbackHandler()
        moa = ChatMoA(
            proposers=_proposers(), aggregator=ScriptedChatModel(model_name="agg"), layers=2
        )
        result = getattr(prompt | moa, call)({"q": "hi"}, config={"callbacks": [tracer]})
        if call == "stream":
            list(result)
        runs = _all_runs(tracer)
        models = {run.name: run for run in runs if run.run_type == "llm"}
        assert set(models) == {"ChatMoA", "aggregator", "layer1/p1", "layer1/p2"}, call
        # Every model run inside the graph descends from ChatMoA's run.
        by_id = {run.id: run for run in runs}
        for name in ("aggregator", "layer1/p1", "layer1/p2"):
            parent = models[name].parent_run_id
            while parent is not None and by_id[parent].name != "ChatMoA":
                parent = by_id[parent].parent_run_id
            assert parent == models["ChatMoA"].id, (call, name)


def test_a_callers_handler_counts_chat_moa_once_and_sees_layer_events() -> None:
    class Events(BaseCallbackHandler):
        def __init__(self):
            self.model_starts, self.events = 0, []

        def on_chat_model_start(self, *args, **kwargs):
            self.model_starts += 1

        def on_custom_event(self, name, data, **kwargs):
            self.events.append((name, data["node"]))

    moa = ChatMoA(proposers=_proposers(), aggregator=ScriptedChatModel(model_name="agg"), layers=2)
    for call in ("invoke", "stream"):
        events = Events()
        with get_usage_metadata_callback() as usage:
            result = getattr(moa, call)("q", config={"callbacks": [events]})
            if call == "stream":
                list(result)
        assert events.model_starts == 1, call
        assert (CALL_END, "layer1/p1") in events.events
        assert list(usage.usage_metadata) == ["moa-2l:agg"]


class Outer(TypedDict):
    messages: Annotated[list, operator.add]


def test_inside_an_outer_graph_messages_stream_shows_only_the_answer() -> None:
    aggregator = ScriptedChatModel(model_name="agg", reply="final words here")
    moa = ChatMoA(proposers=_proposers(), aggregator=aggregator, layers=2)

    def chat(state: Outer) -> dict:
        return {"messages": [moa.invoke(state["messages"])]}

    saver = InMemorySaver()
    outer = (
        StateGraph(Outer).add_node("chat", chat).add_edge(START, "chat").compile(checkpointer=saver)
    )
    config = {"configurable": {"thread_id": "t"}}
    tokens = [
        chunk.content
        for chunk, meta in outer.stream(
            {"messages": [HumanMessage("q")]}, config, stream_mode="messages"
        )
        if chunk.content
    ]
    assert "".join(tokens) == "final words here"
    assert "use get_weather" not in "".join(tokens)
    # The inner graph kept no checkpoints of its own in the outer saver.
    namespaces = {c.config["configurable"].get("checkpoint_ns", "") for c in saver.list(config)}
    assert namespaces == {""}
    assert outer.get_state(config).values["messages"][-1].content == "final words here"


def test_a_thread_keeps_each_runs_layer_apart() -> None:
    def proposer(messages):
        return f"draft for {messages[-1].text}"

    aggregator = ScriptedChatModel(model_name="agg", reply="ok")
    graph = build_moa_graph(
        [
            [
                ScriptedChatModel(model_name="a", reply=proposer),
                ScriptedChatModel(model_name="b", reply=proposer),
            ]
        ],
        aggregator,
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"messages": [HumanMessage("first")]}, config)
    state = graph.invoke({"messages": [HumanMessage("second")]}, config)
    second_system = aggregator.log[1]["messages"][0].text
    assert second_system.endswith("\n1. draft for second\n2. draft for second")
    assert [m.type for m in state["messages"]] == ["human", "ai", "human", "ai"]
    turns = sorted({c["turn"] for c in state["calls"]})
    assert len(turns) == 2
    assert sum(c["layer"] == 1 and c["turn"] == turns[1] for c in state["calls"]) == 2


def test_the_callers_messages_are_not_changed() -> None:
    conversation = [HumanMessage("q")]
    ChatMoA(proposers=_proposers(), aggregator=ScriptedChatModel(), layers=2).invoke(conversation)
    assert conversation[0].id is None
