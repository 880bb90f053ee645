"""``moa serve`` for agents, in process: tools, structured answers, images, the Responses API."""

import base64
import json

import pytest
from langchain_core.messages import AIMessage
from starlette.testclient import TestClient

from langchain_moa import ChatMoA
from langchain_moa.graph.budget import OMITTED
from langchain_moa.openai_compatible import openai_compatible_model
from langchain_moa.serve.app import create_app
from langchain_moa.serve.structured import AnswerFormat, apply
from tests.unit_tests.scripted import ScriptedChatModel
from tests.weather import WEATHER

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
CALL = {"name": "weather", "args": {"city": "Paris"}, "id": "call_abc", "type": "tool_call"}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "degrees": {"type": "integer"}},
    "required": ["city", "degrees"],
    "additionalProperties": False,
}


@pytest.fixture(autouse=True)
def no_socket_probe(monkeypatch):
    monkeypatch.setenv("LANGCHAIN_OPENAI_TCP_KEEPALIVE", "0")


def _calls_tools(messages):
    # A tool result in the conversation: answer in text; else call the tool.
    if messages[-1].type == "tool":
        return f"It is {messages[-1].text}."
    return AIMessage(content="", tool_calls=[CALL])


def _moa(aggregator, *, fanout="every_call", proposers=None):
    proposers = proposers or [
        ScriptedChatModel(model_name=f"p{i}", reply=f"proposal {i}") for i in range(2)
    ]
    return ChatMoA(proposers=proposers, aggregator=aggregator, layers=2, fanout=fanout)


def _client(moa):
    return TestClient(create_app({"mine": moa}))


def _data(text):
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


def _ask(content="Weather in Paris?", **fields):
    return {"model": "mine", "messages": [{"role": "user", "content": content}], **fields}


def _conversation(messages):
    return {"model": "mine", "messages": messages, "tools": [WEATHER]}


def test_tools_reach_the_aggregator_and_its_call_is_the_answer():
    aggregator = ScriptedChatModel(model_name="agg", reply=_calls_tools)
    moa = _moa(aggregator)
    with _client(moa) as client:
        response = client.post(CHAT, json=_ask(tools=[WEATHER], tool_choice="auto"))
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_abc",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    kwargs = aggregator.log[0]["kwargs"]
    assert kwargs["tools"] == [WEATHER]
    assert kwargs["tool_choice"] == "auto"
    # Proposers read the tools as text, and are not offered them.
    proposer = moa.stack.layers[0][0]
    assert "tools" not in proposer.log[0]["kwargs"]
    assert "weather" in proposer.log[0]["messages"][0].text


@pytest.mark.parametrize(
    ("choice", "bound"),
    [
        ("none", "none"),
        # One tool that must be called is that tool (ChatMoA.bind_tools).
        ("required", {"type": "function", "function": {"name": "weather"}}),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"type": "function", "function": {"name": "weather"}},
        ),
    ],
)
def test_tool_choice_goes_to_the_aggregator_as_bind_tools_takes_it(choice, bound):
    aggregator = ScriptedChatModel(model_name="agg", reply=_calls_tools)
    with _client(_moa(aggregator)) as client:
        response = client.post(CHAT, json=_ask(tools=[WEATHER], tool_choice=choice))
    assert response.status_code == 200, response.text
    assert aggregator.log[0]["kwargs"]["tool_choice"] == bound


def test_streamed_tool_calls_are_openai_deltas():
    aggregator = ScriptedChatModel(model_name="agg", reply=_calls_tools)
    with _client(_moa(aggregator)) as client:
        response = client.post(CHAT, json=_ask(tools=[WEATHER], stream=True))
    events = _data(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert calls == [
        [
            {
                "index": 0,
                "id": "call_abc",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            }
        ]
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tool_loop_reaches_the_stack_as_langchain_messages():
    aggregator = ScriptedChatModel(model_name="agg", reply=_calls_tools)
    call = {
        "id": "call_abc",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "sunny"},
    ]
    with _client(_moa(aggregator)) as client:
        response = client.post(
            CHAT, json={"model": "mine", "messages": messages, "tools": [WEATHER]}
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "It is sunny."
    seen = aggregator.log[0]["messages"]
    ai, tool = seen[-2], seen[-1]
    assert ai.type == "ai"
    assert ai.tool_calls == [CALL]
    assert (tool.type, tool.tool_call_id, tool.text) == ("tool", "call_abc", "sunny")


def test_per_turn_stacks_run_their_proposers_once_over_a_served_tool_loop():
    proposers = [ScriptedChatModel(model_name=f"p{i}", reply=f"proposal {i}") for i in range(2)]
    aggregator = ScriptedChatModel(model_name="agg", reply=_calls_tools)
    moa = _moa(aggregator, fanout="per_turn", proposers=proposers)
    question = [{"role": "user", "content": "Weather in Paris?"}]
    with _client(moa) as client:
        first = client.post(CHAT, json=_conversation(question))
        message = first.json()["choices"][0]["message"]
        # As a client sends it back: its own JSON spacing in the arguments.
        message["tool_calls"][0]["function"]["arguments"] = '{"city":"Paris"}'
        loop = [
            *question,
            message,
            {"role": "tool", "tool_call_id": "call_abc", "content": "sunny"},
        ]
        second = client.post(CHAT, json=_conversation(loop))
    assert second.json()["choices"][0]["message"]["content"] == "It is sunny."
    # The proposers ran once, for the turn; the aggregator twice.
    assert [len(p.log) for p in proposers] == [1, 1]
    assert len(aggregator.log) == 2
    # The second step's aggregator read the first step's references.
    assert "proposal 0" in aggregator.log[1]["messages"][0].text
    assert second.json()["usage"]["completion_tokens"] < first.json()["usage"]["completion_tokens"]


def test_every_call_stacks_run_their_proposers_on_each_step():
    proposers = [ScriptedChatModel(model_name=f"p{i}", reply=f"proposal {i}") for i in range(2)]
    aggregator = ScriptedChatModel(model_name="agg", reply=_calls_tools)
    moa = _moa(aggregator, proposers=proposers)
    question = [{"role": "user", "content": "Weather in Paris?"}]
    with _client(moa) as client:
        first = client.post(CHAT, json=_conversation(question))
        message = first.json()["choices"][0]["message"]
        loop = [
            *question,
            message,
            {"role": "tool", "tool_call_id": "call_abc", "content": "sunny"},
        ]
        client.post(CHAT, json=_conversation(loop))
    assert [len(p.log) for p in proposers] == [2, 2]


def test_json_schema_with_a_model_of_no_native_support_is_asked_and_checked():
    answer = '{"city": "Paris", "degrees": 21}'
    aggregator = ScriptedChatModel(model_name="agg", reply=answer)
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA}}
    with _client(_moa(aggregator)) as client:
        response = client.post(CHAT, json=_ask(response_format=fmt))
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == {
        "city": "Paris",
        "degrees": 21,
    }
    system = aggregator.log[0]["messages"][0]
    assert system.type == "system"
    assert '"degrees"' in system.text
    assert "response_format" not in aggregator.log[0]["kwargs"]


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        ("Paris, 21 degrees", "not valid JSON"),
        ('["Paris"]', "not an object"),
        ('{"city": "Paris"}', "'degrees' is a required property"),
        ('{"city": "Paris", "degrees": "warm"}', "at degrees"),
    ],
)
def test_an_answer_that_is_not_the_json_asked_for_is_a_503_never_a_success(reply, words):
    aggregator = ScriptedChatModel(model_name="agg", reply=reply)
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA}}
    with _client(_moa(aggregator)) as client:
        response = client.post(CHAT, json=_ask(response_format=fmt))
        streamed = client.post(CHAT, json=_ask(response_format=fmt, stream=True))
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "invalid_structured_answer"
    assert words in error["message"]
    # Streamed: the text went out as it came, but the stream ends in an error, not a finish.
    events = _data(streamed.text)
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "invalid_structured_answer"
    finishes = [
        c["choices"][0]["finish_reason"] for c in map(json.loads, events[:-1]) if c.get("choices")
    ]
    assert set(finishes) == {None}


def test_json_schema_goes_natively_to_an_openai_compatible_aggregator():

    served = openai_compatible_model("m", base_url="http://127.0.0.1:1/v1", api_key="x")
    fmt = AnswerFormat.of("json_schema", {"name": "weather", "schema": SCHEMA, "strict": True})
    messages, options = apply(fmt, [served], [], {"stop": ["x"]})
    assert messages == []
    assert options == {
        "stop": ["x"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True},
        },
    }


def test_an_image_reaches_image_models_and_a_placeholder_reaches_text_models():
    seeing = ScriptedChatModel(model_name="agg", reply="a cat", profile={"image_inputs": True})
    blind = ScriptedChatModel(model_name="p0", reply="proposal")
    moa = _moa(seeing, proposers=[blind])
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    with _client(moa) as client:
        response = client.post(CHAT, json=_ask(content))
    assert response.status_code == 200, response.text
    image = {"type": "image", "mime_type": "image/png", "base64": PNG}
    assert image in seeing.log[0]["messages"][-1].content
    assert OMITTED in blind.log[0]["messages"][-1].text
    assert image not in blind.log[0]["messages"][-1].content


def test_a_bad_image_is_a_400_naming_it():
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]
    with _client(_moa(ScriptedChatModel(model_name="agg"))) as client:
        response = client.post(CHAT, json=_ask(content))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].content"
    assert "base64" in response.json()["error"]["message"]


# The Responses API.


def _responses(**fields):
    return {"model": "mine", "input": "Weather in Paris?", **fields}


def test_a_response_answers_a_string_input_with_usage():
    aggregator = ScriptedChatModel(model_name="agg", reply="Sunny in Paris.")
    with _client(_moa(aggregator)) as client:
        response = client.post(RESPONSES, json=_responses(instructions="Be brief."))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "response"
    assert body["status"] == "completed"
    assert body["id"].startswith("resp_")
    [item] = body["output"]
    assert item["type"] == "message"
    assert item["content"][0]["text"] == "Sunny in Paris."
    assert body["usage"]["output_tokens"] > 3
    seen = aggregator.log[0]["messages"]
    assert seen[0].type == "system"
    assert "Be brief." in seen[0].text
    assert seen[-1].text == "Weather in Paris?"


def test_a_response_calls_functions_and_reads_their_outputs():
    aggregator = ScriptedChatModel(model_name="agg", reply=_calls_tools)
    tool = {"type": "function", **WEATHER["function"]}
    with _client(_moa(aggregator)) as client:
        first = client.post(RESPONSES, json=_responses(tools=[tool])).json()
        [call] = first["output"]
        assert call["type"] == "function_call"
        assert (call["call_id"], call["name"]) == ("call_abc", "weather")
        assert json.loads(call["arguments"]) == {"city": "Paris"}
        items = [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            call,
            {"type": "function_call_output", "call_id": "call_abc", "output": "sunny"},
        ]
        second = client.post(RESPONSES, json=_responses(input=items, tools=[tool])).json()
    assert second["output"][0]["content"][0]["text"] == "It is sunny."
    seen = aggregator.log[1]["messages"]
    assert seen[-2].tool_calls == [CALL]
    assert (seen[-1].type, seen[-1].tool_call_id) == ("tool", "call_abc")


def _stream_events(text):
    lines = [line for line in text.splitlines() if line]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert names == [event["type"] for event in data]
    return data


def test_a_streamed_response_has_the_official_events_in_order():
    aggregator = ScriptedChatModel(model_name="agg", reply="Sunny in Paris.")
    with _client(_moa(aggregator)) as client:
        response = client.post(RESPONSES, json=_responses(stream=True))
    events = _stream_events(response.text)
    kinds = [event["type"] for event in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == ["Sunny", " in", " Paris."]
    done = events[-1]["response"]
    assert done["output"][0]["content"][0]["text"] == "Sunny in Paris."
    assert done["usage"]["total_tokens"] > 0


def test_a_streamed_function_call_has_its_argument_deltas():
    aggregator = ScriptedChatModel(model_name="agg", reply=_calls_tools)
    tool = {"type": "function", **WEATHER["function"]}
    with _client(_moa(aggregator)) as client:
        response = client.post(RESPONSES, json=_responses(tools=[tool], stream=True))
    events = _stream_events(response.text)
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["type"] == "function_call"
    assert added["item"]["name"] == "weather"
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert json.loads("".join(deltas)) == {"city": "Paris"}
    done = events[-1]["response"]
    assert done["output"][0]["arguments"] == "".join(deltas)


def test_a_streamed_response_that_is_not_the_json_asked_for_fails():
    aggregator = ScriptedChatModel(model_name="agg", reply="not json")
    text = {"format": {"type": "json_schema", "name": "weather", "schema": SCHEMA}}
    with _client(_moa(aggregator)) as client:
        response = client.post(RESPONSES, json=_responses(stream=True, text=text))
    events = _stream_events(response.text)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "invalid_structured_answer"
    assert "response.completed" not in [e["type"] for e in events]


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "keeps nothing"),
        ({"store": True}, "store", "keeps nothing"),
        ({"conversation": "conv_1"}, "conversation", "keeps nothing"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "'web_search'"),
        ({"tools": [{"type": "file_search"}]}, "tools[0].type", "'file_search'"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice", "built-in"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0]", "item references"),
        ({"input": []}, "input", "nothing to answer"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format", "json_schema"),
        ({"top_p": 0.5}, "top_p", "not supported"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].message.content",
            "file ids",
        ),
    ],
)
def test_a_bad_responses_field_is_a_400_naming_it(change, param, words):
    with _client(_moa(ScriptedChatModel(model_name="agg"))) as client:
        response = client.post(RESPONSES, json={**_responses(), **change})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert words in error["message"]


def test_store_false_is_answered():
    with _client(_moa(ScriptedChatModel(model_name="agg", reply="ok"))) as client:
        response = client.post(RESPONSES, json=_responses(store=False))
    assert response.status_code == 200, response.text
    assert response.json()["store"] is False
