"""``moa serve`` as an agent framework's model, over uvicorn on 127.0.0.1.

The clients are the official ones (``openai`` for Python, ``openai`` for
node, installed with npm here), LangChain's ``create_agent`` over
``ChatOpenAI`` and the OpenAI Agents SDK, through both of its models. The
stack's models are real ``ChatOpenAI`` clients of the scripted
OpenAI-compatible server (``scripted_openai.py``) in this process: its
aggregator calls a tool when offered one on a user's turn, quotes the tool's
result after it, and writes JSON that follows a requested schema. The last
tests run the embedded model through the server: a structured answer under
llama.cpp's grammar, and a plain response.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import openai
import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ConfigDict

from tests.integration_tests.embedded import embedded_stack, scripted_stack, serving
from tests.integration_tests.scripted_openai import ScriptedOpenAI
from tests.weather import WEATHER

pytestmark = pytest.mark.timeout(300)

KEY = "test-agents-token-0123456789"
JS = Path(__file__).with_name("js")
QUESTION = [{"role": "user", "content": "What is the weather in 'Paris'?"}]


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: str
    degrees: int


@pytest.fixture(scope="module")
def scripted():
    with ScriptedOpenAI() as serving:
        yield serving


@pytest.fixture(scope="module")
def served(scripted, server):
    stacks = {
        "agents": scripted_stack(scripted.base_url),
        "agents-per-turn": scripted_stack(scripted.base_url, "per_turn"),
        "local": embedded_stack(server, proposers=2, max_tokens=48),
    }
    with serving(stacks, api_key=KEY) as background:
        yield background


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served.base_url, api_key=KEY, max_retries=0)


def _aggregator_requests(scripted: ScriptedOpenAI) -> list[dict]:
    return [r for r in scripted.requests if r.get("model") == "aggregator"]


def test_tools_then_the_tool_result_through_the_python_client(client, scripted):
    called = client.chat.completions.create(model="agents", messages=QUESTION, tools=[WEATHER])
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    # The aggregator was offered the tool over HTTP; the proposers were not.
    assert _aggregator_requests(scripted)[-1]["tools"][0]["function"]["name"] == "weather"
    assert all("tools" not in r for r in scripted.requests if r["model"].startswith("proposer"))
    result = {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    answered = client.chat.completions.create(
        model="agents",
        messages=[*QUESTION, choice.message.model_dump(exclude_none=True), result],
        tools=[WEATHER],
    )
    assert answered.choices[0].finish_reason == "stop"
    assert answered.choices[0].message.content == "The tool answered: sunny"


def test_a_streamed_tool_call_through_the_python_client(client):
    stream = client.chat.completions.create(
        model="agents",
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        stream=True,
    )
    chunks = list(stream)
    fragments = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    first = fragments[0]
    assert (first.index, first.type, first.function.name) == (0, "function", "weather")
    assert first.id
    # Later fragments carry arguments only, as OpenAI's do.
    assert all(f.id is None and f.function.name is None for f in fragments[1:])
    arguments = "".join(f.function.arguments or "" for f in fragments)
    assert json.loads(arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_parse_gives_the_schemas_object_through_the_python_client(client, scripted):
    parsed = client.chat.completions.parse(
        model="agents",
        messages=[{"role": "user", "content": "How warm is 'Paris' at 21 degrees?"}],
        response_format=Report,
    )
    assert parsed.choices[0].message.parsed == Report(city="Paris", degrees=21)
    # Native: the aggregator's own request asked for the schema.
    asked = _aggregator_requests(scripted)[-1]["response_format"]
    assert asked["type"] == "json_schema"
    assert asked["json_schema"]["schema"]["required"] == ["city", "degrees"]


def test_a_streamed_structured_answer_through_the_python_client(client):
    question = [{"role": "user", "content": "How warm is 'Rome' at 25 degrees?"}]
    with client.chat.completions.stream(
        model="agents", messages=question, response_format=Report
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 1
    assert final.choices[0].message.parsed == Report(city="Rome", degrees=25)


def test_a_response_plain_and_streamed_through_the_python_client(client):
    response = client.responses.create(
        model="agents", input="Name a fruit.", instructions="Be brief."
    )
    assert response.status == "completed"
    assert response.output_text == "A scripted answer to: Name a fruit."
    assert response.usage.total_tokens > 0
    with client.responses.stream(model="agents", input="Name a fruit.") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") > 1
    assert final.output_text == "A scripted answer to: Name a fruit."


def test_a_response_with_a_function_tool_loop_through_the_python_client(client):
    tool_ = {"type": "function", **WEATHER["function"], "strict": True}
    first = client.responses.create(model="agents", input=QUESTION, tools=[tool_])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("weather", {"city": "Paris"})
    items = [
        *QUESTION,
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    second = client.responses.create(model="agents", input=items, tools=[tool_])
    assert second.output_text == "The tool answered: sunny"
    # Streamed, the call's arguments come as deltas.
    with client.responses.stream(model="agents", input=QUESTION, tools=[tool_]) as stream:
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert json.loads("".join(deltas)) == {"city": "Paris"}
    assert final.output[0].type == "function_call"


def test_responses_parse_through_the_python_client(client):
    parsed = client.responses.parse(
        model="agents", input="How warm is 'Paris' at 21 degrees?", text_format=Report
    )
    assert parsed.output_parsed == Report(city="Paris", degrees=21)


def test_a_stateful_response_is_refused_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="agents", input="Hi", previous_response_id="resp_1")
    assert raised.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="agents", input="Hi", tools=[{"type": "web_search"}])
    assert "web_search" in raised.value.body["message"]


@pytest.mark.needs_index
def test_the_official_npm_client(served, tmp_path):
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm, "npm is needed: it is on these machines, beside node"
    assert node, "node is needed: it is on these machines"
    for name in ("package.json", "package-lock.json", "client.mjs"):
        shutil.copy(JS / name, tmp_path / name)
    installed = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert installed.returncode == 0, (
        f"npm ci failed: this test needs the npm registry or npm's cache: {installed.stderr}"
    )
    env = {
        "PATH": os.environ["PATH"],
        "MOA_BASE_URL": served.base_url,
        "MOA_API_KEY": KEY,
        "MOA_MODEL": "agents",
    }
    ran = subprocess.run(
        [node, "client.mjs"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["tool_call"] == {
        "finish": "tool_calls",
        "name": "weather",
        "arguments": {"city": "Paris"},
    }
    assert seen["tool_answer"] == "The tool answered: sunny"
    streamed = seen["streamed_tool_call"]
    assert streamed["first"] == {"index": 0, "id": True, "name": "weather"}
    assert streamed["arguments"] == {"city": "Paris"}
    assert streamed["finish"] == "tool_calls"
    assert streamed["total_tokens"] > 0
    assert seen["structured"] == {"city": "Paris", "degrees": 21}
    assert seen["response"]["status"] == "completed"
    assert seen["response"]["text"] == "A scripted answer to: Name a fruit."
    assert seen["response"]["tokens"] > 0
    stream = seen["response_stream"]
    assert (stream["first"], stream["last"]) == ("response.created", "response.completed")
    assert stream["text"] == stream["completed_text"] == "A scripted answer to: Name a fruit."
    assert seen["response_tool"] == {
        "name": "weather",
        "arguments": {"city": "Paris"},
        "answer": "The tool answered: sunny",
    }
    assert seen["previous"] == {"status": 400, "param": "previous_response_id"}


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def test_langchain_create_agent_over_chat_openai_completes_a_tool_loop(served, scripted):
    model = ChatOpenAI(base_url=served.base_url, api_key=KEY, model="agents", max_retries=0)
    agent = create_agent(model=model, tools=[weather])
    result = await agent.ainvoke({"messages": [("user", "What is the weather in 'Paris'?")]})
    messages = result["messages"]
    answers = [m for m in messages if isinstance(m, AIMessage)]
    assert [len(a.tool_calls) for a in answers] == [1, 0]
    assert answers[0].tool_calls[0]["args"] == {"city": "Paris"}
    assert messages[-2].type == "tool"
    assert messages[-2].text == "sunny in Paris"
    assert answers[-1].text == "The tool answered: sunny in Paris"


async def test_per_turn_over_http_runs_the_proposers_once_for_a_tool_loop(served, scripted):
    model = ChatOpenAI(
        base_url=served.base_url, api_key=KEY, model="agents-per-turn", max_retries=0
    )
    agent = create_agent(model=model, tools=[weather])
    before = len(scripted.requests)
    result = await agent.ainvoke({"messages": [("user", "What is the weather in 'Rome'?")]})
    assert result["messages"][-1].text == "The tool answered: sunny in Rome"
    models = [r["model"] for r in scripted.requests[before:]]
    # One proposer layer of two, once for the turn; the aggregator at each of 2 steps.
    assert sorted(models) == ["aggregator", "aggregator", "proposer-a", "proposer-b"]


@function_tool
def city_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
async def test_the_openai_agents_sdk_runs_an_agent_with_a_function_tool(served, api):
    # Its traces go to OpenAI's servers by default: nothing leaves this machine.
    set_tracing_disabled(disabled=True)
    client = openai.AsyncOpenAI(base_url=served.base_url, api_key=KEY, max_retries=0)
    model = (
        OpenAIResponsesModel(model="agents", openai_client=client)
        if api == "responses"
        else OpenAIChatCompletionsModel(model="agents", openai_client=client)
    )
    agent = Agent(
        name="weather", instructions="Answer with the tool.", tools=[city_weather], model=model
    )
    result = await Runner.run(agent, "What is the weather in 'Oslo'?")
    await client.close()
    assert result.final_output == "The tool answered: sunny in Oslo"
    calls = [i for i in result.new_items if i.type == "tool_call_item"]
    outputs = [i for i in result.new_items if i.type == "tool_call_output_item"]
    assert len(calls) == len(outputs) == 1
    assert outputs[0].output == "sunny in Oslo"


# The embedded model, through the server.


def test_a_structured_answer_from_the_embedded_model_under_its_grammar(client):
    schema = {
        "type": "object",
        "properties": {"fruit": {"type": "string", "maxLength": 12}},
        "required": ["fruit"],
        "additionalProperties": False,
    }
    answer = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "Name a fruit, as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "fruit", "schema": schema, "strict": True},
        },
    )
    # llama.cpp sampled under a grammar made from the schema, and the server checked it.
    value = json.loads(answer.choices[0].message.content)
    assert set(value) == {"fruit"}
    assert isinstance(value["fruit"], str)


def test_a_response_from_the_embedded_model(client):
    response = client.responses.create(model="local", input="Name a fruit.", max_output_tokens=8)
    assert response.status in {"completed", "incomplete"}
    assert response.output_text.strip()
    assert response.usage.input_tokens > 0
