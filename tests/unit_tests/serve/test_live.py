"""The live page's endpoint in process: the layer events, in order, from the library's own."""

import asyncio
import json
import re
import time
from functools import partial

import httpx
import pytest
from langchain_core.messages import HumanMessage
from starlette.testclient import TestClient

from langchain_moa import ChatMoA
from langchain_moa.graph.state import ANSWER_CHUNK, CALL_END, CALL_ERROR, CALL_START
from langchain_moa.serve import app as app_module
from langchain_moa.serve.app import PAGE, create_app
from langchain_moa.serve.live import ANSWER as ANSWER_EVENT
from langchain_moa.serve.live import ERROR, live_events
from tests.unit_tests.scripted import ScriptedChatModel
from tests.unit_tests.serve.asgi import leave_when

ANSWER = "one two three four five six"
QUESTION = {"model": "mine", "messages": [{"role": "user", "content": "What is MoA?"}]}


@pytest.fixture(autouse=True)
def no_socket_probe(monkeypatch):
    monkeypatch.setenv("LANGCHAIN_OPENAI_TCP_KEEPALIVE", "0")


def _moa(*, failing=None, aggregator_error=None, min_proposers=1):
    proposers = [
        ScriptedChatModel(
            model_name=f"p{i}",
            reply=f"proposal number {i}",
            error="the provider is down" if i == failing else None,
        )
        for i in range(3)
    ]
    aggregator = ScriptedChatModel(model_name="agg", reply=ANSWER, error=aggregator_error)
    return ChatMoA(
        proposers=proposers, aggregator=aggregator, layers=3, min_proposers=min_proposers
    )


def _events(text):
    return [
        json.loads(line.removeprefix("data: "))
        for line in text.splitlines()
        if line.startswith("data: ")
    ]


def _live(moa, body=QUESTION):
    with TestClient(create_app({"mine": moa})) as client:
        response = client.post("/live", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return _events(response.text)


def test_every_call_is_announced_then_recorded_before_the_answer_streams():
    events = _live(_moa())
    kinds = [e["event"] for e in events]
    proposer_nodes = {f"layer{layer}/p{i}" for layer in (1, 2) for i in range(3)}
    starts = {e["node"] for e in events if e["event"] == "moa_call_start"}
    ends = [e for e in events if e["event"] == "moa_call_end"]
    assert starts == {*proposer_nodes, "aggregator"}
    assert {e["node"] for e in ends} == {*proposer_nodes, "aggregator"}
    first_token = kinds.index("moa_answer_chunk")
    last_proposer = max(i for i, e in enumerate(events) if e.get("node") in proposer_nodes)
    assert last_proposer < first_token
    # Layer 2's calls start after layer 1's end: the join waits for the layer.
    layer1_ends = [i for i, e in enumerate(events) if e.get("node", "").startswith("layer1/")]
    layer2_starts = [
        i for i, e in enumerate(events)
        if e["event"] == "moa_call_start" and e["node"].startswith("layer2/")
    ]  # fmt: skip
    assert max(layer1_ends) < min(layer2_starts)
    # A call's record is the library's ModelCall, as the answer's metadata holds it.
    record = next(e for e in ends if e["node"] == "layer1/p0")
    assert record["text"] == "proposal number 0"
    assert record["usage"]["output_tokens"] == 3
    assert record["error"] is None
    assert record["latency_s"] >= 0
    # The answer's tokens one by one, as the aggregator streamed them: never re-split.
    chunks = [e["text"] for e in events if e["event"] == "moa_answer_chunk"]
    assert chunks == ["one", " two", " three", " four", " five", " six"]
    # The answer's own record comes after its last chunk, before the end.
    assert kinds.index("moa_call_end", first_token) == len(kinds) - 2
    assert events[-2]["node"] == "aggregator"
    assert kinds[-1] == "moa_answer"
    total = events[-1]["metadata"]["accounting"]["total"]
    assert total["calls"] == 7
    assert total["failures"] == 0
    # 6 proposals of 3 words and the 6-word answer.
    assert total["usage"]["output_tokens"] == 24
    assert total["critical_path_s"] <= total["latency_s"]
    assert events[-1]["metadata"]["degradations"] == []


def test_a_failing_proposer_is_an_error_event_with_its_reason():
    events = _live(_moa(failing=1))
    errors = [e for e in events if e["event"] == "moa_call_error"]
    assert {e["node"] for e in errors} == {"layer1/p1", "layer2/p1"}
    assert all(e["error"] == "RuntimeError: the provider is down" for e in errors)
    assert all(e["reason"] == "other" for e in errors)
    assert all(e["text"] is None for e in errors)
    assert events[-1]["event"] == "moa_answer"
    metadata = events[-1]["metadata"]
    assert metadata["accounting"]["total"]["failures"] == 2
    assert metadata["degradations"]


def test_a_stack_that_cannot_answer_ends_with_an_error_event():
    events = _live(_moa(aggregator_error="no capacity"))
    assert events[-1]["event"] == "moa_error"
    assert "no capacity" in events[-1]["error"]["message"]
    # What happened before the failure was shown as it happened.
    assert sum(e["event"] == "moa_call_end" for e in events) == 6


def test_a_layer_below_its_quorum_ends_with_an_error_event():
    events = _live(_moa(failing=1, min_proposers=3))
    assert events[-1]["event"] == "moa_error"
    assert events[-1]["error"]["code"] == "providers_unavailable"
    assert "layer 1" in events[-1]["error"]["message"]


def test_a_conversation_of_several_turns_reaches_the_stack():
    moa = _moa()
    body = {
        "model": "mine",
        "messages": [
            {"role": "user", "content": "What is MoA?"},
            {"role": "assistant", "content": "Layers of models."},
            {"role": "user", "content": "Why layers?"},
        ],
    }
    events = _live(moa, body)
    assert events[-1]["event"] == "moa_answer"
    seen = moa.stack.aggregator.log[-1]["messages"]
    assert [m.text for m in seen][-3:-1] == ["What is MoA?", "Layers of models."]
    assert "Why layers?" in seen[-1].text


def test_live_checks_the_request_as_the_completions_endpoint_does():
    with TestClient(create_app({"mine": _moa()}, api_key="a-long-test-key-0123")) as client:
        assert client.post("/live", json=QUESTION).status_code == 401
        headers = {"Authorization": "Bearer a-long-test-key-0123"}
        unknown = client.post("/live", json={**QUESTION, "model": "theirs"}, headers=headers)
        assert unknown.status_code == 404
        assert "mine" in unknown.json()["error"]["message"]
        empty = client.post("/live", json={"model": "mine", "messages": []}, headers=headers)
        assert empty.status_code == 400
        assert empty.json()["error"]["param"] == "messages"
        ends_with_answer = client.post(
            "/live",
            json={"model": "mine", "messages": [{"role": "assistant", "content": "hi"}]},
            headers=headers,
        )
        assert ends_with_answer.status_code == 400
        assert "nothing to answer" in ends_with_answer.json()["error"]["message"]
        # The page itself holds nothing secret: it loads without the key.
        assert client.get("/").status_code == 200


def test_the_page_and_its_assets_are_served_from_the_package():
    with TestClient(create_app({"mine": _moa()})) as client:
        page = client.get("/")
        script = client.get("/page/page.js")
        style = client.get("/page/page.css")
        missing = client.get("/page/nothing.js")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert style.status_code == 200
    assert missing.status_code == 404
    for asset in ('src="/page/page.js"', 'href="/page/page.css"'):
        assert asset in page.text


def test_the_page_downloads_nothing_from_elsewhere():
    for path in PAGE.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), path.name


def test_the_page_sets_model_text_as_text_never_as_html():
    script = (PAGE / "page.js").read_text(encoding="utf-8")
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script
    assert "textContent" in script


def test_the_page_knows_every_event_the_endpoint_sends():
    script = (PAGE / "page.js").read_text(encoding="utf-8")
    for name in (CALL_START, CALL_END, CALL_ERROR, ANSWER_CHUNK, ANSWER_EVENT, ERROR):
        assert f'"{name}"' in script, name


async def test_a_reader_that_leaves_cancels_the_stacks_calls():
    slow = ScriptedChatModel(model_name="slow", reply="late", delay_s=30)
    fast = ScriptedChatModel(model_name="fast", reply="soon")
    aggregator = ScriptedChatModel(model_name="agg", reply=ANSWER)
    moa = ChatMoA(proposers=[fast, slow], aggregator=aggregator, layers=2)
    events = live_events(moa, [HumanMessage("What is MoA?")])
    seen = [await anext(events)]
    while not (seen[-1]["event"] == CALL_END and seen[-1]["node"] == "layer1/fast"):
        seen.append(await anext(events))
    started = time.perf_counter()
    await events.aclose()
    # The slow proposer's call is cancelled, not waited for; the aggregator never runs.
    assert time.perf_counter() - started < 5
    assert "end" not in slow.log[0]
    assert aggregator.log == []


def test_the_slot_of_a_live_answer_is_given_back_when_it_ends():
    with TestClient(create_app({"mine": _moa()}, max_concurrency=1)) as client:
        for _ in range(3):
            response = client.post("/live", json=QUESTION)
            assert response.status_code == 200
            assert _events(response.text)[-1]["event"] == "moa_answer"


def test_live_takes_json_only_and_no_request_from_another_site():
    with TestClient(create_app({"mine": _moa()})) as client:
        # A form on any site can post text/plain without asking the server first.
        as_text = client.post(
            "/live", content=json.dumps(QUESTION), headers={"content-type": "text/plain"}
        )
        assert as_text.status_code == 415
        assert "application/json" in as_text.json()["error"]["message"]
        elsewhere = {"origin": "https://example.com"}
        for path in ("/live", "/v1/chat/completions"):
            refused = client.post(path, json=QUESTION, headers=elsewhere)
            assert refused.status_code == 403, path
            assert refused.json()["error"]["code"] == "cross_origin_request"
        # The page's own requests carry its origin: this server.
        same = client.post("/live", json=QUESTION, headers={"origin": "http://testserver"})
        assert same.status_code == 200
        assert _events(same.text)[-1]["event"] == "moa_answer"


def test_the_page_is_never_stale_and_loads_nothing_from_elsewhere():
    with TestClient(create_app({"mine": _moa()})) as client:
        for path in ("/", "/page/page.js", "/page/page.css"):
            headers = client.get(path).headers
            assert headers["cache-control"] == "no-cache", path
            assert "default-src 'self'" in headers["content-security-policy"], path


async def test_a_silent_layer_sends_keepalives():
    slow = ScriptedChatModel(model_name="slow", reply="late", delay_s=0.3)
    moa = ChatMoA(proposers=[slow], aggregator=ScriptedChatModel(reply="done"), layers=2)
    kinds = [
        event["event"] async for event in live_events(moa, [HumanMessage("q")], keepalive_s=0.05)
    ]
    assert kinds.count("moa_keepalive") >= 2
    assert kinds[-1] == "moa_answer"


def test_keepalives_are_comments_in_the_stream(monkeypatch):
    monkeypatch.setattr(app_module, "live_events", partial(live_events, keepalive_s=0.05))
    slow = ScriptedChatModel(model_name="slow", reply="late", delay_s=0.3)
    moa = ChatMoA(proposers=[slow], aggregator=ScriptedChatModel(reply="done"), layers=2)
    with TestClient(create_app({"mine": moa})) as client:
        text = client.post("/live", json=QUESTION).text
    assert ": keepalive\n\n" in text
    assert "moa_keepalive" not in text
    assert _events(text)[-1]["event"] == "moa_answer"


async def test_a_page_that_leaves_cancels_the_stacks_calls_and_frees_its_slot():
    slow = ScriptedChatModel(model_name="slow", reply="late", delay_s=3)
    fast = ScriptedChatModel(model_name="fast", reply="soon")
    aggregator = ScriptedChatModel(model_name="agg", reply=ANSWER)
    moa = ChatMoA(proposers=[fast, slow], aggregator=aggregator, layers=2)
    app = create_app({"mine": moa}, max_concurrency=1)
    started = time.perf_counter()
    await leave_when(app, "/live", QUESTION, b"layer1/fast", b"moa_call_end")
    assert time.perf_counter() - started < 2
    await asyncio.sleep(0.1)
    # The slow proposer was cancelled, not left running; the aggregator never ran.
    assert "end" not in slow.log[0]
    assert aggregator.log == []
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in pending if "slow" in repr(t) or "layer1" in repr(t)]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://moa") as client:
        assert (await client.post("/live", json=QUESTION)).status_code == 200
    await asyncio.sleep(3)
    assert "end" not in slow.log[0]
