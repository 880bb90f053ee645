"""``moa serve``'s app in process: OpenAI's request and answer shapes, limits and errors."""

import asyncio
import json
import logging

import httpx
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk
from starlette.testclient import TestClient

from langchain_moa import ChatMoA
from langchain_moa.openai_compatible import max_tokens_option, openai_compatible_model
from langchain_moa.serve.app import create_app, default_stacks
from tests.unit_tests.scripted import ScriptedChatModel
from tests.unit_tests.serve.asgi import leave_when, post_scope

URL = "/v1/chat/completions"
ANSWER = "one two three four five six"
QUESTION = {"model": "mine", "messages": [{"role": "user", "content": "What is MoA?"}]}


@pytest.fixture(autouse=True)
def no_socket_probe(monkeypatch):
    # ChatOpenAI opens (never connects) a socket to probe TCP keepalive options when
    # it is built; pytest-socket blocks that and warns. Without keepalive: no probe.
    monkeypatch.setenv("LANGCHAIN_OPENAI_TCP_KEEPALIVE", "0")


def _moa(*, proposer_error=None, delay_s=0.0, aggregator=None):
    proposers = [
        ScriptedChatModel(
            model_name=f"p{i}", reply=f"proposal number {i}", error=proposer_error, delay_s=delay_s
        )
        for i in range(3)
    ]
    aggregator = aggregator or ScriptedChatModel(model_name="agg", reply=ANSWER)
    return ChatMoA(proposers=proposers, aggregator=aggregator, layers=2)


def _client(moa=None, **kwargs):
    return TestClient(create_app({"mine": moa or _moa()}, **kwargs))


def _events(text):
    """The data of each server-sent event."""
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


def _error(response, status, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    return error


def test_plain_answer_with_the_stacks_usage():
    moa = _moa()
    expected = moa.invoke("What is MoA?").usage_metadata
    with _client() as client:
        response = client.post(URL, json=QUESTION)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "mine"
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ANSWER},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    # Every call's tokens: 3 proposals of 3 words and the 6-word answer.
    assert body["usage"]["completion_tokens"] == 15
    assert body["usage"] == {
        "prompt_tokens": expected["input_tokens"],
        "completion_tokens": expected["output_tokens"],
        "total_tokens": expected["total_tokens"],
    }


def test_the_request_reaches_the_stack_as_its_conversation():
    aggregator = ScriptedChatModel(model_name="agg", reply=ANSWER)
    question = {
        "model": "mine",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "What is MoA?"},
        ],
    }
    with _client(_moa(aggregator=aggregator)) as client:
        assert client.post(URL, json=question).status_code == 200
    seen = aggregator.log[0]["messages"]
    assert [m.type for m in seen][-3:] == ["human", "ai", "human"]
    assert seen[-1].text == "What is MoA?"
    assert any("Be brief." in m.text for m in seen if m.type == "system")


def test_stop_temperature_and_max_tokens_go_to_the_final_answer_only():
    aggregator = ScriptedChatModel(model_name="agg", reply=ANSWER)
    moa = _moa(aggregator=aggregator)
    question = {**QUESTION, "stop": "\n\n", "temperature": 0.2, "max_completion_tokens": 7}
    with _client(moa) as client:
        assert client.post(URL, json=question).status_code == 200
    kwargs = aggregator.log[0]["kwargs"]
    assert kwargs["stop"] == ["\n\n"]
    assert kwargs["temperature"] == 0.2
    assert kwargs["max_tokens"] == 7
    for proposer in moa.stack.layers[0]:
        assert "temperature" not in proposer.log[0]["kwargs"]
        assert "max_tokens" not in proposer.log[0]["kwargs"]


def test_max_tokens_travels_in_extra_body_where_the_model_keeps_its_own_there():
    served = openai_compatible_model(
        "m", base_url="http://127.0.0.1:1/v1", api_key="x", max_tokens=64
    )
    moa = ChatMoA(proposers=[served], aggregator=served, layers=2)
    assert max_tokens_option(moa.stack.aggregators, 5) == {"extra_body": {"max_tokens": 5}}
    assert max_tokens_option(_moa().stack.aggregators, 5) == {"max_tokens": 5}


def test_streamed_answer_is_the_stacks_chunks_then_done():
    with _client() as client:
        response = client.post(URL, json={**QUESTION, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    texts = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
    # The scripted aggregator streams word by word: each chunk as it came.
    assert texts == ["one", " two", " three", " four", " five", " six"]
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all("usage" not in c for c in chunks)


def test_include_usage_adds_a_last_chunk_with_the_stacks_usage():
    expected = _moa().invoke("What is MoA?").usage_metadata
    question = {**QUESTION, "stream": True, "stream_options": {"include_usage": True}}
    with _client() as client:
        response = client.post(URL, json=question)
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": expected["input_tokens"],
        "completion_tokens": expected["output_tokens"],
        "total_tokens": expected["total_tokens"],
    }


class _FailsMidStream(ScriptedChatModel):
    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        yield ChatGenerationChunk(message=AIMessageChunk(content="half"))
        raise RuntimeError("the provider hung up")


def test_an_error_in_the_middle_of_a_stream_is_an_error_event_then_the_end(caplog):
    moa = _moa(aggregator=_FailsMidStream(model_name="agg"))
    with caplog.at_level(logging.WARNING), _client(moa) as client:
        response = client.post(URL, json={**QUESTION, "stream": True})
    assert response.status_code == 200
    events = _events(response.text)
    assert json.loads(events[1])["choices"][0]["delta"] == {"content": "half"}
    error = json.loads(events[-1])["error"]
    assert error["type"] == "server_error"
    assert "the provider hung up" in error["message"]
    assert "[DONE]" not in events
    assert "the provider hung up" in caplog.text


def test_models_lists_every_stack():
    app = create_app({"mine": _moa(), "other": _moa})
    with TestClient(app) as client:
        body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["mine", "other"]
    for card in body["data"]:
        assert card["object"] == "model"
        assert card["owned_by"] == "langchain-moa"
        assert isinstance(card["created"], int)


def test_by_default_the_embedded_stack_and_the_presets_are_listed():
    assert list(default_stacks()) == ["local", "moa", "moa-lite", "moa-gpt4o"]
    with TestClient(create_app()) as client:
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["local", "moa", "moa-lite", "moa-gpt4o"]


def test_a_preset_without_its_key_is_a_503_naming_the_variable(monkeypatch):
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    with TestClient(create_app()) as client:
        response = client.post(URL, json={**QUESTION, "model": "moa-lite"})
    error = _error(response, 503)
    assert error["type"] == "server_error"
    assert "TOGETHER_API_KEY" in error["message"]


def test_a_stack_is_built_once_on_its_first_request():
    built = []

    def build():
        built.append(1)
        return _moa()

    with TestClient(create_app({"mine": build})) as client:
        assert built == []
        for _ in range(3):
            assert client.post(URL, json=QUESTION).status_code == 200
    assert built == [1]


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"model": None}, "model", "Field required"),
        ({"messages": []}, "messages", "at least 1"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "'user'"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "https://a.test/i.png"}}
                        ],
                    }
                ]
            },
            "messages[0].content",
            "only data URLs",
        ),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content",
            "only text parts",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content",
            "'input_audio'",
        ),
        ({"n": 2}, "n", "n=1"),
        (
            {"tools": [{"type": "web_search", "function": {"name": "f"}}]},
            "tools[0].type",
            "function",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "a b"}}]},
            "tools[0].function.name",
            "letters",
        ),
        ({"functions": [{"name": "f"}]}, "functions", "send tools"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
            "'g'",
        ),
        ({"tool_choice": "sometimes"}, "tool_choice", "'required'"),
        ({"temperature": 3}, "temperature", "2"),
        ({"max_tokens": 0}, "max_tokens", "1"),
        ({"response_format": {"type": "xml"}}, "response_format", "json_schema"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "a", "schema": {"type": 5}},
                }
            },
            "response_format",
            "not a valid JSON schema",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "x"},
                ]
            },
            "messages",
            "ends with the assistant",
        ),
        (
            {"messages": [{"role": "tool", "content": "42"}]},
            "messages[0]",
            "tool_call_id",
        ),
    ],
)
def test_a_bad_field_is_a_400_naming_it(change, param, words):
    question = {k: v for k, v in {**QUESTION, **change}.items() if v is not None}
    with _client() as client:
        response = client.post(URL, json=question)
    error = _error(response, 400, param)
    assert error["type"] == "invalid_request_error"
    assert param in error["message"]
    assert words in error["message"]


def test_unsupported_fields_at_their_neutral_value_are_accepted():
    neutral = {"n": 1, "top_p": 1, "presence_penalty": 0, "logprobs": False, "user": "u"}
    with _client() as client:
        assert client.post(URL, json={**QUESTION, **neutral}).status_code == 200


def test_malformed_json_is_a_400():
    with _client() as client:
        response = client.post(
            URL, content=b'{"model": "mine", ', headers={"content-type": "application/json"}
        )
    error = _error(response, 400)
    assert "not valid JSON" in error["message"]


def test_json_nested_too_deeply_is_a_400():
    body = b"[" * 100_000 + b"]" * 100_000
    with _client() as client:
        response = client.post(URL, content=body, headers={"content-type": "application/json"})
    assert "nested too deeply" in _error(response, 400)["message"]


def test_too_many_messages_is_a_400():
    question = {**QUESTION, "messages": [{"role": "user", "content": "hi"}] * 3}
    with _client(max_messages=2) as client:
        response = client.post(URL, json=question)
    assert "at most 2" in _error(response, 400, "messages")["message"]


def test_a_missing_or_wrong_token_is_a_401_that_echoes_nothing():
    token = "s3cret-token-for-tests"  # noqa: S105
    with _client(api_key=token) as client:
        missing = client.post(URL, json=QUESTION)
        wrong = client.post(URL, json=QUESTION, headers={"Authorization": "Bearer nope-token"})
        listing = client.get("/v1/models")
        right = client.post(URL, json=QUESTION, headers={"Authorization": f"Bearer {token}"})
        health = client.get("/health")
    for response in (missing, wrong, listing):
        error = _error(response, 401)
        assert error["code"] == "invalid_api_key"
        assert token not in response.text
        assert "nope-token" not in response.text
    assert right.status_code == 200
    assert health.status_code == 200


def test_an_unknown_model_is_a_404_listing_the_served_ones():
    app = create_app({"mine": _moa(), "other": _moa})
    with TestClient(app) as client:
        response = client.post(URL, json={**QUESTION, "model": "gpt-5"})
    error = _error(response, 404, "model")
    assert error["code"] == "model_not_found"
    assert "'gpt-5'" in error["message"]
    assert "mine, other" in error["message"]


def test_an_unknown_route_is_an_openai_style_404():
    with _client() as client:
        response = client.get("/v1/nothing")
    _error(response, 404)


def test_a_body_over_the_limit_is_a_413_declared_or_not():
    big = {**QUESTION, "messages": [{"role": "user", "content": "x" * 500}]}
    with _client(max_body_bytes=200) as client:
        declared = client.post(URL, json=big)
        # A generator body goes chunked, with no Content-Length to check.
        chunked = client.post(
            URL, content=iter([json.dumps(big).encode()[i : i + 50] for i in range(0, 600, 50)])
        )
        small = client.post(URL, json=QUESTION)
    assert _error(declared, 413)["code"] == "request_too_large"
    assert _error(chunked, 413)["code"] == "request_too_large"
    assert small.status_code == 200


async def test_past_the_concurrency_limit_a_request_is_refused_at_once_with_429():
    moa = _moa(delay_s=0.5)
    app = create_app({"mine": moa}, max_concurrency=1)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://moa") as client:
        first = asyncio.create_task(client.post(URL, json=QUESTION))
        # The first holds the only slot once its proposers run.
        while not moa.stack.layers[0][0].log:  # noqa: ASYNC110 - a scripted model's log
            await asyncio.sleep(0.01)
        refused = await client.post(URL, json=QUESTION)
        answered = await first
        after = await client.post(URL, json=QUESTION)
    error = _error(refused, 429)
    assert error["code"] == "rate_limit_exceeded"
    assert refused.headers["Retry-After"] == "1"
    assert answered.status_code == 200
    # The slot was given back: no leak.
    assert after.status_code == 200


async def test_a_stream_gives_its_slot_back():
    app = create_app({"mine": _moa()}, max_concurrency=1)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://moa") as client:
        for _ in range(3):
            response = await client.post(URL, json={**QUESTION, "stream": True})
            assert response.status_code == 200


def test_every_proposer_failing_is_a_503_naming_the_failure_without_the_key(caplog):
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz123456"
    moa = _moa(proposer_error=f"connection refused (key {key})")
    with caplog.at_level(logging.WARNING), _client(moa) as client:
        plain = client.post(URL, json=QUESTION)
        streamed = client.post(URL, json={**QUESTION, "stream": True})
    for response in (plain, streamed):
        error = _error(response, 503)
        assert error["type"] == "server_error"
        assert "LayerFailedError" in error["message"]
        assert "connection refused" in error["message"]
        assert key not in response.text
    assert "LayerFailedError" in caplog.text
    assert key not in caplog.text


def test_an_unexpected_failure_is_a_500_that_is_logged_not_told(caplog):
    class Exploding:
        stack = _moa().stack
        fanout = "every_call"

        async def ainvoke(self, messages, **kwargs):
            raise KeyError("a bug with private details")

    with (
        caplog.at_level(logging.ERROR),
        TestClient(create_app({"mine": Exploding})) as client,
    ):
        response = client.post(URL, json=QUESTION)
    error = _error(response, 500)
    assert error["type"] == "server_error"
    assert "private details" not in response.text
    assert "private details" in caplog.text


async def test_a_client_that_leaves_mid_stream_gives_its_slot_back():
    aggregator = ScriptedChatModel(model_name="agg", reply=ANSWER, token_delay_s=0.01)
    app = create_app({"mine": _moa(aggregator=aggregator)}, max_concurrency=1)
    body = json.dumps({**QUESTION, "stream": True}).encode()
    scope = post_scope(URL, spec_version="2.4")
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and len(sent) > 2:
            raise OSError("the client left")

    with pytest.raises(Exception):  # noqa: B017, PT011 - Starlette's own ClientDisconnect
        await app(scope, receive, send)
    # The rest of the answer was never sent, and the slot is free again.
    assert len(sent) == 3
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://moa") as client:
        assert (await client.post(URL, json=QUESTION)).status_code == 200


class _Cut(ScriptedChatModel):
    """An aggregator whose provider says it stopped at its token limit."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        result.generations[0].message.response_metadata["finish_reason"] = "length"
        return result

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        return self._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        async for part in super()._astream(messages, stop=stop, **kwargs):
            yield part
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", response_metadata={"finish_reason": "length"})
        )


def test_an_answer_cut_at_its_token_limit_finishes_with_length():
    moa = _moa(aggregator=_Cut(model_name="agg", reply=ANSWER))
    assert moa.invoke("q").response_metadata["finish_reason"] == "length"
    with _client(moa) as client:
        plain = client.post(URL, json=QUESTION).json()
        streamed = client.post(URL, json={**QUESTION, "stream": True})
    assert plain["choices"][0]["finish_reason"] == "length"
    finishes = [
        json.loads(e)["choices"][0]["finish_reason"]
        for e in _events(streamed.text)
        if e != "[DONE]" and json.loads(e)["choices"]
    ]
    assert finishes[-1] == "length"
    assert set(finishes[:-1]) == {None}
    with _client() as client:
        assert client.post(URL, json=QUESTION).json()["choices"][0]["finish_reason"] == "stop"


async def test_a_client_that_leaves_under_uvicorn_cancels_the_stacks_calls():
    # uvicorn speaks ASGI 2.3: Starlette then cancels a stream whose client left
    # with an anyio cancel scope, which cancels every await of the clean-up again.
    aggregator = ScriptedChatModel(model_name="agg", reply=ANSWER, token_delay_s=0.5)
    moa = _moa(aggregator=aggregator)
    app = create_app({"mine": moa}, max_concurrency=1)
    await leave_when(app, URL, {**QUESTION, "stream": True}, b'"content":"one"')
    await asyncio.sleep(0.1)
    # The aggregator was stopped mid-answer, not left streaming to no one.
    assert "end" not in aggregator.log[0]
    await asyncio.sleep(1.5)
    assert "end" not in aggregator.log[0]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://moa") as client:
        assert (await client.post(URL, json=QUESTION)).status_code == 200
